"""One newest-frame slot per camera, shared by subscription callbacks (producers) and the caption worker.

Captioning is slower than cameras (BLIP-base on a CPU: ~2 s per caption), so the node must never build a backlog:
a frame that arrives while its camera's previous frame still waits replaces it, and the replaced one is counted as
dropped. The worker takes every waiting frame at once, so cameras are captioned together in one batch.
Frames carry a `decode` callable, not pixels: a frame that is dropped is never decoded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .stats import CameraStats


@dataclass(frozen=True)
class Frame:
    camera: str
    stamp_ns: int
    frame_id: str
    decode: Callable[[], np.ndarray]
    """Returns the RGB uint8 image; raises ImageConversionError for bad input."""
    header: Any = None
    """The source message's header, copied unchanged into every output (opaque here)."""
    received_ns: int = field(default_factory=time.monotonic_ns)
    bag_time_ns: int | None = None
    """The source message's receive time in a bag (caption-bag logs the outputs at it); None live."""


class FrameSlots:
    def __init__(self, cameras: Iterable[str], clock=time.monotonic):
        self.stats = {camera: CameraStats(camera, clock=clock) for camera in cameras}
        self._slots: dict[str, Frame | None] = dict.fromkeys(self.stats)
        self._ready = threading.Condition()
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Store `frame` as its camera's newest; returns True when it replaced (dropped) a waiting frame."""
        stats = self.stats[frame.camera]
        with self._ready:
            dropped = self._slots[frame.camera] is not None
            self._slots[frame.camera] = frame
            stats.count("received")
            if dropped:
                stats.count("dropped")
            self._ready.notify()
        return dropped

    def take(self, timeout: float | None = None) -> list[Frame]:
        """Every waiting frame (camera order), waiting up to `timeout` s for one; [] on timeout or after close()."""
        with self._ready:
            self._ready.wait_for(lambda: self._closed or any(self._slots.values()), timeout)
            if self._closed:
                return []
            frames = [frame for frame in self._slots.values() if frame is not None]
            self._slots = dict.fromkeys(self._slots)
            return frames

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
