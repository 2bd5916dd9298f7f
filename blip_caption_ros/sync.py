"""Nearest-in-time matching of sensor messages to camera frames.

Why not message_filters' ApproximateTimeSynchronizer: it emits a set only when *every* topic has a message in the
set, so a silent radar would silence the captions too, and it decides when the image arrives. Here a camera frame is
always captioned; each sensor is matched on its own, when the caption is ready (a LiDAR sweep that arrives after
the image but is nearer in time still counts), and only within `max_offset_ns` of the image: a sensor that is
further away in time is reported as missing (None), never as stale data. message_filters is also not installable
where this package must run without a ROS install.

Buffers are bounded (oldest dropped first), keep stamps sorted (small out-of-order arrivals are inserted in
place) and reset when time jumps backwards by more than `backwards_reset_ns` (a bag played in a loop).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    """A value (a sensor summary) and the stamp of the message it came from, in nanoseconds."""

    stamp_ns: int
    value: T


class SensorBuffer(Generic[T]):
    """The last `capacity` stamped values of one sensor, searchable by time; safe across threads."""

    def __init__(self, capacity: int, backwards_reset_ns: int = 1_000_000_000):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.backwards_reset_ns = backwards_reset_ns
        self._stamps: list[int] = []
        self._values: list[T] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp_ns(self) -> int | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def add(self, stamp_ns: int, value: T) -> bool:
        """Store `value`; returns True when this stamp jumped back in time and the buffer was reset first."""
        with self._lock:
            reset = bool(self._stamps) and self._stamps[-1] - stamp_ns > self.backwards_reset_ns
            if reset:
                self._stamps.clear()
                self._values.clear()
            index = bisect.bisect_right(self._stamps, stamp_ns)
            self._stamps.insert(index, stamp_ns)
            self._values.insert(index, value)
            if len(self._stamps) > self.capacity:
                del self._stamps[0], self._values[0]
            return reset

    def nearest(self, stamp_ns: int, max_offset_ns: int) -> Stamped[T] | None:
        """The entry nearest to `stamp_ns` (the earlier one on a tie), or None if none lies within `max_offset_ns`."""
        with self._lock:
            index = bisect.bisect_left(self._stamps, stamp_ns)
            candidates = [i for i in (index - 1, index) if 0 <= i < len(self._stamps)]
            if not candidates:
                return None
            best = min(candidates, key=lambda i: abs(self._stamps[i] - stamp_ns))
            if abs(self._stamps[best] - stamp_ns) > max_offset_ns:
                return None
            return Stamped(self._stamps[best], self._values[best])
