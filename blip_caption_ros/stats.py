"""Counters, rates and latency percentiles for diagnostics; thread-safe, ROS-free.

Frames enter and leave the pipeline on different threads (subscription callbacks vs the caption worker), so every
frame a camera delivers ends in exactly one counter: captioned, dropped (replaced by a newer frame before the
worker took it), bad_inputs (could not be decoded) or failed (the model raised). `received` equals their sum once
the pipeline is idle.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class LatencyWindow:
    """The last `size` samples (milliseconds) and their percentiles."""

    def __init__(self, size: int = 200):
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append(value_ms)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            if not self._samples:
                return None
            return float(np.percentile(np.fromiter(self._samples, dtype=np.float64), q))


class RateMeter:
    """Events per second over the last `window_s` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self._events.append(self._clock())
            self._trim()

    def rate_hz(self) -> float:
        with self._lock:
            self._trim()
            return len(self._events) / self.window_s

    def _trim(self) -> None:
        horizon = self._clock() - self.window_s
        while self._events and self._events[0] < horizon:
            self._events.popleft()


class CameraStats:
    """Where each frame of one camera went, how fast, and when the last one arrived."""

    COUNTERS = ("received", "captioned", "dropped", "bad_inputs", "failed")
    #: Frames that never arrived: lost in transport (the middleware's count) and publishers whose QoS cannot match.
    TRANSPORT = ("lost", "qos_incompatible")

    def __init__(self, camera: str, clock=time.monotonic):
        self.camera = camera
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.COUNTERS + self.TRANSPORT, 0)
        self.last_received: float | None = None
        self.received_rate = RateMeter(clock=clock)
        self.captioned_rate = RateMeter(clock=clock)
        self.queue_ms = LatencyWindow()
        self.inference_ms = LatencyWindow()
        self.total_ms = LatencyWindow()

    def count(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[counter] += n
            if counter == "received":
                self.last_received = self._clock()
        if counter == "received":
            self.received_rate.tick()
        elif counter == "captioned":
            self.captioned_rate.tick()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def silent_for(self) -> float | None:
        """Seconds since the last frame, None if none ever arrived."""
        with self._lock:
            return None if self.last_received is None else self._clock() - self.last_received


class SensorStats:
    """Messages of one sensor topic: received, bad, time resets, and the newest stamp."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self.received = 0
        self.bad_inputs = 0
        self.time_resets = 0

    def count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)
