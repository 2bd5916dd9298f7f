"""The caption worker: takes the newest frame of every camera, captions them in one batch, matches sensors.

Runs on its own thread so subscription callbacks never wait for the model. Sensors are matched after the model
returns, not when the image arrived, so a LiDAR sweep or radar scan that is nearer in time but arrived late still
counts. Each batch's results go to a `publish` callable; problems go to `report` (the node logs them, throttled)
and to the camera's counters. ROS-free: the node runs it on its thread, caption-bag calls `caption_frames` for each
batch of a recording, and the tests drive it through `run_once`.

Nothing one batch does can end the thread: a failure to decode, caption, match or publish is counted and reported,
and the next batch goes on. Should the thread end anyway (a BaseException, a bug in the loop itself) while no stop
was asked for, `on_exit` is called with the reason, so the node can turn /diagnostics ERROR and exit non-zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backends import Captioner
from .caption_message import Latency, caption_record
from .frame_slots import Frame, FrameSlots
from .imaging import ImageConversionError
from .sensors import LidarSummary, RadarSummary
from .shutdown import WORKER_THREAD
from .sync import SensorBuffer


@dataclass(frozen=True)
class CaptionResult:
    frame: Frame
    image: np.ndarray
    caption: str
    record: dict
    """The caption JSON object (caption_message.caption_record)."""


class CaptionWorker:
    def __init__(
        self,
        slots: FrameSlots,
        captioner: Captioner,
        publish: Callable[[list[CaptionResult]], None],
        report: Callable[[str, str, BaseException], None],
        *,
        prompt: str | None = None,
        lidar: SensorBuffer[LidarSummary] | None = None,
        radar: SensorBuffer[RadarSummary] | None = None,
        max_sensor_offset_ms: float = 100.0,
        max_rate_hz: float = 0.0,
        on_exit: Callable[[BaseException], None] | None = None,
    ):
        """`publish` gets each batch's results (camera order); `report(kind, camera, error)` gets kind "bad_input" or
        "failed"; `max_rate_hz` 0 means unlimited; `on_exit(reason)` runs on the worker thread if it ends without
        `stop()`."""
        self.slots = slots
        self.captioner = captioner
        self.publish = publish
        self.report = report
        self.prompt = prompt  # replaced at runtime by the node's parameter callback; None = the captioner's own
        self.lidar = lidar
        self.radar = radar
        self.max_offset_ns = int(max_sensor_offset_ms * 1e6)
        self.min_period_s = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.on_exit = on_exit
        self.died: BaseException | None = None
        """Why the thread ended without stop() (None while it runs or after a clean stop)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=WORKER_THREAD, daemon=True)
        self._next_batch = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Ask the thread to stop and wait for the batch in progress (at most `timeout` s); True once it has ended."""
        self._stop.set()
        self.slots.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        reason: BaseException | None = None
        try:
            while not self._stop.is_set():
                delay = self._next_batch - time.monotonic()
                if delay > 0 and self._stop.wait(delay):  # rate limit: newer frames replace older ones meanwhile
                    break
                try:
                    self.run_once(timeout=0.5)
                except Exception as exc:  # outside the per-batch guards (slots, stats): report it and go on
                    self.report("failed", "every camera", exc)
        except BaseException as exc:  # noqa: BLE001 - whatever ends the thread must reach on_exit
            reason = exc
        finally:
            if not self._stop.is_set():
                self.died = reason or RuntimeError("the caption worker loop ended")
                if self.on_exit is not None:
                    self.on_exit(self.died)

    def run_once(self, timeout: float | None = None) -> list[CaptionResult]:
        """Caption whatever frames are waiting (waiting up to `timeout` s for one) and publish the results."""
        frames = self.slots.take(timeout)
        if not frames:
            return []
        self._next_batch = time.monotonic() + self.min_period_s
        return self.caption_frames(frames)

    def caption_frames(self, frames: list[Frame]) -> list[CaptionResult]:
        """Decode `frames`, caption them in one batch, match sensors, publish; the results that were published.

        Every failure is counted on its camera and reported, never raised: a bad frame is skipped ("bad_input"), a
        model or publish error fails the batch ("failed")."""
        taken_ns = time.monotonic_ns()
        decoded: list[tuple[Frame, np.ndarray]] = []
        for frame in frames:
            try:
                decoded.append((frame, frame.decode()))
            except ImageConversionError as exc:
                self.slots.stats[frame.camera].count("bad_inputs")
                self.report("bad_input", frame.camera, exc)
        if not decoded:
            return []
        start_ns = time.monotonic_ns()
        try:
            captions = self.captioner.caption([image for _, image in decoded], self.prompt)
            inference_ms = (time.monotonic_ns() - start_ns) / 1e6
            results = [self._result(frame, image, caption, taken_ns, inference_ms)
                       for (frame, image), caption in zip(decoded, captions, strict=True)]
            self.publish(results)
        except Exception as exc:  # a model (CUDA OOM...) or publish failure must not end the worker: count, report
            for frame, _ in decoded:
                self.slots.stats[frame.camera].count("failed")
                self.report("failed", frame.camera, exc)
            return []
        for result in results:
            self.slots.stats[result.frame.camera].count("captioned")
        return results

    def _result(self, frame: Frame, image: np.ndarray, caption: str, taken_ns: int, inference_ms: float):
        lidar = self.lidar.nearest(frame.stamp_ns, self.max_offset_ns) if self.lidar is not None else None
        radar = self.radar.nearest(frame.stamp_ns, self.max_offset_ns) if self.radar is not None else None
        queue_ms = (taken_ns - frame.received_ns) / 1e6
        total_ms = (time.monotonic_ns() - frame.received_ns) / 1e6
        stats = self.slots.stats[frame.camera]
        stats.queue_ms.add(queue_ms)
        stats.inference_ms.add(inference_ms)
        stats.total_ms.add(total_ms)
        record = caption_record(
            camera=frame.camera, stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, caption=caption,
            backend=self.captioner.backend, model=self.captioner.model_name,
            latency=Latency(queue_ms, inference_ms, total_ms), lidar=lidar, radar=radar,
        )
        return CaptionResult(frame, image, caption, record)
