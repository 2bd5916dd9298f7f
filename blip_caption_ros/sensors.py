"""LiDAR and radar summaries from PointCloud2 payloads, with numpy only.

The caption carries a few figures a reader can check against the scene, computed in the sensor's own frame
(REP-103: x forward, y left, z up):

LiDAR
    points      finite points at or beyond `min_range_m` (closer returns are the sensor housing, the ego vehicle, or
                drivers that write (0, 0, 0) for "no return").
    nearest_m   smallest Euclidean range sqrt(x²+y²+z²) among those points.
    sector      the same two figures for points whose azimuth atan2(y, x) lies in [min_deg, max_deg]
                (0° = straight ahead, positive = left); nearest_m is None when the sector is empty.
Radar
    targets            finite targets (x, y, z all finite); an empty radar cloud is a valid "nothing detected".
    nearest_m          smallest Euclidean range, None without targets.
    closing_speed_mps  speed of the fastest approaching target: max(-v_radial) over targets with v_radial < 0,
                       0.0 when none approaches, None when the cloud has no velocity field. The field is
                       `velocity_field`, or else the first present of velocity, v_r, doppler, vx. velocity / v_r /
                       doppler are radial (range rate, positive = receding); vx (with vy, vz when present) is a
                       Cartesian velocity and is projected on the line of sight first.
    rcs_dbsm           radar cross-section of the nearest target, None when the cloud has no `rcs_field`.

The readers take any object with PointCloud2's attributes (rclpy messages, rosbags messages) and never import rclpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: sensor_msgs/PointField datatype -> numpy type code.
POINTFIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
FLOAT_TYPES = {7, 8}
RADAR_VELOCITY_FIELDS = ("velocity", "v_r", "doppler", "vx")


class CloudError(ValueError):
    """A point cloud that cannot be summarised (layout, field types, no finite points)."""


def read_fields(cloud, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Fields of a PointCloud2-like `cloud` as flat float64 arrays, one per point (row padding skipped).

    `required` fields must exist and be FLOAT32/FLOAT64 scalars; `optional` ones are returned only when present and
    may be of any numeric type.
    """
    by_name = {field.name: field for field in cloud.fields}
    missing = [name for name in required if name not in by_name]
    if missing:
        raise CloudError(f"cloud has no field {', '.join(missing)} (fields: {', '.join(by_name) or 'none'})")
    wanted = [name for name in dict.fromkeys((*required, *optional)) if name in by_name]
    order = ">" if cloud.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in wanted:
        field = by_name[name]
        if field.datatype not in POINTFIELD_TYPES:
            raise CloudError(f"field {name!r} has unknown PointField datatype {field.datatype}")
        if name in required and field.datatype not in FLOAT_TYPES:
            raise CloudError(f"field {name!r} must be FLOAT32 or FLOAT64, got datatype {field.datatype}")
        if field.count != 1:
            raise CloudError(f"field {name!r} has count {field.count}; expected 1")
        size = np.dtype(POINTFIELD_TYPES[field.datatype]).itemsize
        if field.offset + size > cloud.point_step:
            raise CloudError(f"field {name!r} (offset {field.offset}) does not fit point_step {cloud.point_step}")
        names.append(name)
        formats.append(order + POINTFIELD_TYPES[field.datatype])
        offsets.append(field.offset)
    height, width, point_step, row_step = cloud.height, cloud.width, cloud.point_step, cloud.row_step
    if height * width == 0:
        return {name: np.empty(0, dtype=np.float64) for name in names}
    if row_step < width * point_step:
        raise CloudError(f"row_step {row_step} < width {width} x point_step {point_step}")
    buffer = memoryview(cloud.data).cast("B")
    needed = row_step * (height - 1) + width * point_step
    if len(buffer) < needed:
        raise CloudError(f"cloud {width}x{height} (row_step {row_step}) needs {needed} bytes, got {len(buffer)}")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    points = np.ndarray(shape=(height, width), dtype=dtype, buffer=buffer, strides=(row_step, point_step))
    return {name: points[name].astype(np.float64).ravel() for name in names}


@dataclass(frozen=True)
class LidarSettings:
    """How a LiDAR cloud is summarised (see the module docstring)."""

    sector_min_deg: float = -30.0
    sector_max_deg: float = 30.0
    min_range_m: float = 0.1


DEFAULT_LIDAR = LidarSettings()


@dataclass(frozen=True)
class LidarSummary:
    frame_id: str
    points: int
    nearest_m: float
    sector_min_deg: float
    sector_max_deg: float
    sector_points: int
    sector_nearest_m: float | None


@dataclass(frozen=True)
class RadarSettings:
    """Which radar fields carry velocity and RCS; an empty `velocity_field` picks the first of RADAR_VELOCITY_FIELDS."""

    velocity_field: str = ""
    rcs_field: str = "rcs"


DEFAULT_RADAR = RadarSettings()


@dataclass(frozen=True)
class RadarSummary:
    frame_id: str
    targets: int
    nearest_m: float | None
    closing_speed_mps: float | None
    rcs_dbsm: float | None
    velocity_field: str | None


def summarize_lidar(cloud, settings: LidarSettings = DEFAULT_LIDAR) -> LidarSummary:
    """Point count and nearest ranges, overall and in the forward sector, of a PointCloud2-like `cloud`."""
    xyz = read_fields(cloud, ("x", "y", "z"))
    x, y, z = xyz["x"], xyz["y"], xyz["z"]
    total = x.size
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    ranges = np.sqrt(x * x + y * y + z * z, where=finite, out=np.full(total, np.nan))
    kept = finite & (ranges >= settings.min_range_m)
    if not kept.any():
        raise CloudError(
            f"lidar cloud of {total} points has no finite point at or beyond {settings.min_range_m} m"
        )
    azimuth = np.degrees(np.arctan2(y, x, where=kept, out=np.zeros(total)))
    in_sector = kept & (azimuth >= settings.sector_min_deg) & (azimuth <= settings.sector_max_deg)
    return LidarSummary(
        frame_id=cloud.header.frame_id,
        points=int(kept.sum()),
        nearest_m=float(ranges[kept].min()),
        sector_min_deg=settings.sector_min_deg,
        sector_max_deg=settings.sector_max_deg,
        sector_points=int(in_sector.sum()),
        sector_nearest_m=float(ranges[in_sector].min()) if in_sector.any() else None,
    )


def summarize_radar(cloud, settings: RadarSettings = DEFAULT_RADAR) -> RadarSummary:
    """Target count, nearest range, closing speed and RCS of a PointCloud2-like radar `cloud`."""
    present = {field.name for field in cloud.fields}
    if settings.velocity_field:
        if settings.velocity_field not in present:
            raise CloudError(
                f"radar cloud has no velocity field {settings.velocity_field!r} (fields: {', '.join(sorted(present))})"
            )
        velocity_field = settings.velocity_field
    else:
        velocity_field = next((name for name in RADAR_VELOCITY_FIELDS if name in present), None)
    optional = [name for name in (velocity_field, "vy", "vz", settings.rcs_field) if name]
    values = read_fields(cloud, ("x", "y", "z"), optional)
    x, y, z = values["x"], values["y"], values["z"]
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if x.size and not finite.any():
        raise CloudError(f"radar cloud of {x.size} points has no finite target")
    x, y, z = x[finite], y[finite], z[finite]
    ranges = np.sqrt(x * x + y * y + z * z)
    targets = int(ranges.size)
    nearest = int(np.argmin(ranges)) if targets else None

    closing = None
    if velocity_field is not None:
        radial = _radial_velocity(values, velocity_field, finite, x, y, z, ranges)
        approaching = -radial[np.isfinite(radial) & (radial < 0)]
        closing = float(approaching.max()) if approaching.size else 0.0
    rcs = None
    if settings.rcs_field in values and nearest is not None:
        rcs = float(values[settings.rcs_field][finite][nearest])
    return RadarSummary(
        frame_id=cloud.header.frame_id,
        targets=targets,
        nearest_m=float(ranges[nearest]) if nearest is not None else None,
        closing_speed_mps=closing,
        rcs_dbsm=rcs,
        velocity_field=velocity_field,
    )


def _radial_velocity(values, field, finite, x, y, z, ranges) -> np.ndarray:
    """Range rate per target (positive = receding); Cartesian vx/vy/vz are projected on the line of sight."""
    if field != "vx":
        return values[field][finite]
    velocity = [values["vx"][finite], *(values[name][finite] if name in values else 0.0 for name in ("vy", "vz"))]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * velocity[0] + y * velocity[1] + z * velocity[2]) / ranges
