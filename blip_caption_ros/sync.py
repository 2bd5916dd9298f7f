"""Nearest-in-time matching of sensor messages to camera frames.

Why not message_filters' ApproximateTimeSynchronizer: it emits a set only when *every* topic has a message in the
set, so a silent radar would silence the captions too, and it decides when the image arrives. Here a camera frame is
always captioned; each sensor is matched on its own, when the caption is ready (a LiDAR sweep that arrives after
the image but is nearer in time still counts), and only within `max_offset_ns` of the image: a sensor that is
further away in time is reported as missing (None), never as stale data. message_filters is also not installable
where this package must run without a ROS install.

Buffers are bounded by time (the node: a sensor's last `keep_ns` of stamps, whatever its rate, so a caption that took
longer than usual still finds the radar scan of its image) or by count (offline tools), oldest dropped first; they keep
stamps sorted (small out-of-order arrivals are inserted in place) and reset when time jumps backwards by more than
`backwards_reset_ns` (a bag played in a loop).
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
    """Stamped values of one sensor, searchable by time; safe across threads.

    Keeps the values stamped within `keep_ns` of the newest stamp and/or the last `capacity` values (at least one
    bound must be given)."""

    def __init__(self, *, keep_ns: int | None = None, capacity: int | None = None,
                 backwards_reset_ns: int = 1_000_000_000):
        if keep_ns is None and capacity is None:
            raise ValueError("a SensorBuffer needs keep_ns or capacity")
        if keep_ns is not None and keep_ns <= 0:
            raise ValueError(f"keep_ns must be > 0, got {keep_ns}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.keep_ns = keep_ns
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
            excess = len(self._stamps) - self.capacity if self.capacity is not None else 0
            if self.keep_ns is not None:
                excess = max(excess, bisect.bisect_left(self._stamps, self._stamps[-1] - self.keep_ns))
            if excess > 0:
                del self._stamps[:excess], self._values[:excess]
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
