"""The caption record (published as JSON on `<cam>/caption`), built from plain values.

Shared by the node and offline tools (bag captioning) so both write the same contract (DESIGN.md, "Node contract").
"""

from __future__ import annotations

from dataclasses import dataclass

from .sensors import LidarSummary, RadarSummary
from .sync import Stamped

NS_PER_S = 1_000_000_000


def stamp_dict(stamp_ns: int) -> dict[str, int]:
    """builtin_interfaces/Time fields for a stamp in nanoseconds."""
    sec, nanosec = divmod(stamp_ns, NS_PER_S)
    return {"sec": sec, "nanosec": nanosec}


def stamp_ns(sec: int, nanosec: int) -> int:
    return sec * NS_PER_S + nanosec


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class Latency:
    """Milliseconds from receipt: waiting for the worker, the model call (whole batch), and receipt to publish."""

    queue_ms: float
    inference_ms: float
    total_ms: float

    def as_dict(self) -> dict[str, float]:
        return {"queue": round(self.queue_ms, 3), "inference": round(self.inference_ms, 3),
                "total": round(self.total_ms, 3)}


def lidar_record(match: Stamped[LidarSummary] | None, image_stamp_ns: int) -> dict | None:
    if match is None:
        return None
    summary = match.value
    return _sensor_record(match, image_stamp_ns, points=summary.points, nearest_m=_round(summary.nearest_m), sector={
        "min_deg": summary.sector_min_deg,
        "max_deg": summary.sector_max_deg,
        "points": summary.sector_points,
        "nearest_m": _round(summary.sector_nearest_m),
    })


def radar_record(match: Stamped[RadarSummary] | None, image_stamp_ns: int) -> dict | None:
    if match is None:
        return None
    summary = match.value
    return _sensor_record(match, image_stamp_ns, targets=summary.targets, nearest_m=_round(summary.nearest_m),
                          closing_speed_mps=_round(summary.closing_speed_mps), rcs_dbsm=_round(summary.rcs_dbsm))


def _sensor_record(match: Stamped, image_stamp_ns: int, **figures) -> dict:
    """What every sensor entry starts with (its stamp, frame and offset from the image), then its own figures."""
    return {"stamp": stamp_dict(match.stamp_ns), "frame_id": match.value.frame_id,
            "offset_ms": _ms(match.stamp_ns - image_stamp_ns), **figures}


def caption_record(
    *,
    camera: str,
    stamp_ns: int,
    frame_id: str,
    caption: str,
    backend: str,
    model: str,
    latency: Latency,
    lidar: Stamped[LidarSummary] | None,
    radar: Stamped[RadarSummary] | None,
) -> dict:
    """The caption JSON object; sensor offsets are sensor stamp minus image stamp (signed, milliseconds)."""
    return {
        "stamp": stamp_dict(stamp_ns),
        "frame_id": frame_id,
        "camera": camera,
        "caption": caption,
        "backend": backend,
        "model": model,
        "latency_ms": latency.as_dict(),
        "lidar": lidar_record(lidar, stamp_ns),
        "radar": radar_record(radar, stamp_ns),
    }
