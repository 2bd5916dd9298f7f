"""A synthetic BDD-style drive as a rosbag2: camera + LiDAR + radar + GPS/IMU/speed that agree with each other.

The ego vehicle drives along a straight street at constant speed. A lead car closes in slowly in the ego lane, an
oncoming car passes on the left, a parked car and a pedestrian slide by on the right; building facades line both
sides. Every sensor sees the same world (REP-103 base frame: x forward, y left, z up):

- camera: `synthetic.SceneRenderer` draws each object where a pinhole camera at `CAMERA_HEIGHT_M` with focal
  length `FOCAL_PX` sees it (the same ground-plane scale the still-image generator uses), so the lead car ahead in
  the image is also the nearest return in the LiDAR's forward sector and the nearest radar target;
- LiDAR: points on every object's rear face and on the facades (ground removed, as most pipelines do);
- radar: one target per object with its range rate (`velocity`, negative = approaching) and an RCS;
- GPS (NavSatFix, 1 Hz), IMU (50 Hz) and speed (TwistStamped) from the ego motion.

Sensors run at their own rates and phases, as on a vehicle, so matching by time is actually exercised.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blip_caption_ros import bag_io
from blip_caption_ros.progress import progress_bar
from blip_train.datasets import synthetic
from blip_train.drives import bag_messages

FOCAL_PX = 900.0
CAMERA_HEIGHT_M = 1.6  # matches synthetic._scale_at: pixels per metre = (row - horizon) / 1.6
START_NS = 1_700_000_000_000_000_000
FACADE_OFFSET_M = 9.0
LIDAR_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
RADAR_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("velocity", "<f4"), ("rcs", "<f4")])


@dataclass(frozen=True)
class Actor:
    """An object in the world: category, lateral offset, size, and motion along the road."""

    category: str
    y_m: float
    x0_m: float
    speed_mps: float  # along +x in the world frame
    width_m: float
    height_m: float
    rcs_dbsm: float
    wrap_m: float = 0.0  # respawn this far ahead once passed (0: never)

    def x_at(self, t_s: float, ego_speed: float) -> float:
        """Distance ahead of the ego vehicle at time t."""
        x = self.x0_m + (self.speed_mps - ego_speed) * t_s
        if self.wrap_m and x < 2.0:
            x = 2.0 + (x - 2.0) % self.wrap_m
        return x


def default_actors(ego_speed: float) -> list[Actor]:
    return [
        Actor("car", 0.0, 14.0, ego_speed - 0.4, 1.9, 1.5, 10.0),  # lead car, closing at 0.4 m/s
        Actor("car", 3.5, 70.0, -9.0, 1.9, 1.5, 10.0, wrap_m=70.0),  # oncoming, left lane
        Actor("car", -4.2, 35.0, 0.0, 1.9, 1.5, 8.0, wrap_m=45.0),  # parked, right
        Actor("pedestrian", -6.0, 25.0, 1.2, 0.6, 1.75, -5.0, wrap_m=40.0),
    ]


@dataclass(frozen=True)
class DriveConfig:
    """A synthetic drive: its length, ego speed, sensor rates, camera frames and drawn conditions."""

    duration_s: float = 20.0
    ego_speed_mps: float = 8.0
    camera_hz: float = 10.0
    lidar_hz: float = 10.0
    radar_hz: float = 20.0
    imu_hz: float = 50.0
    gps_hz: float = 1.0
    width: int = 1280
    height: int = 720
    compressed: bool = True
    weather: str = "clear"
    timeofday: str = "daytime"
    scene: str = "city street"
    seed: int = 0
    camera: str = "front"

    def __post_init__(self):
        if self.weather not in synthetic.DRAWN_WEATHERS:
            raise ValueError(f"--weather must be one of {', '.join(synthetic.DRAWN_WEATHERS)}")
        if self.timeofday not in synthetic.DRAWN_TIMES_OF_DAY:
            raise ValueError(f"--timeofday must be one of {', '.join(synthetic.DRAWN_TIMES_OF_DAY)}")
        if self.scene not in synthetic.DRAWN_SCENES:
            raise ValueError(f"--scene must be one of {', '.join(synthetic.DRAWN_SCENES)}")
        if min(self.duration_s, self.camera_hz, self.lidar_hz, self.radar_hz, self.imu_hz, self.gps_hz) <= 0:
            raise ValueError("duration and rates must be positive")


def project(actor: Actor, x: float) -> tuple[float, float, float, float] | None:
    """The actor's image box (x1, y1, x2, y2) at 1280x720, or None when behind the camera or off to the side."""
    if x < 1.5:
        return None
    u = synthetic.WIDTH / 2 - FOCAL_PX * actor.y_m / x
    v_bottom = synthetic.HORIZON + FOCAL_PX * CAMERA_HEIGHT_M / x
    half_w = FOCAL_PX * actor.width_m / x / 2
    h = FOCAL_PX * actor.height_m / x
    box = (u - half_w, v_bottom - h, u + half_w, v_bottom)
    if box[2] < 0 or box[0] > synthetic.WIDTH or box[1] > synthetic.HEIGHT:
        return None
    return box


def lidar_points(actors: list[Actor], t_s: float, ego_speed: float, rng: np.random.Generator) -> np.ndarray:
    chunks = []
    for actor in actors:
        x = actor.x_at(t_s, ego_speed)
        if x <= 0.5:
            continue
        ys, zs = np.meshgrid(np.linspace(-actor.width_m / 2, actor.width_m / 2, 12),
                             np.linspace(0.2, actor.height_m, 8))
        face = np.zeros(ys.size, LIDAR_DTYPE)
        face["x"], face["y"], face["z"] = x, actor.y_m + ys.ravel(), zs.ravel() - CAMERA_HEIGHT_M
        face["intensity"] = 60.0
        chunks.append(face)
    facade_x = np.arange(1.0, 60.0, 0.5)
    for side in (-1, 1):
        wall = np.zeros(facade_x.size * 4, LIDAR_DTYPE)
        wall["x"] = np.repeat(facade_x, 4) - (ego_speed * t_s) % 0.5
        wall["y"] = side * FACADE_OFFSET_M
        wall["z"] = np.tile([0.0, 1.0, 2.0, 3.0], facade_x.size)
        wall["intensity"] = 20.0
        chunks.append(wall)
    cloud = np.concatenate(chunks)
    for axis in ("x", "y", "z"):
        cloud[axis] += rng.normal(0, 0.01, cloud.size).astype(np.float32)
    return cloud


def radar_targets(actors: list[Actor], t_s: float, ego_speed: float) -> np.ndarray:
    rows = []
    for actor in actors:
        x = actor.x_at(t_s, ego_speed)
        if x <= 0.5:
            continue
        r = float(np.hypot(x, actor.y_m))
        range_rate = x * (actor.speed_mps - ego_speed) / r  # relative velocity projected on the line of sight
        rows.append((x, actor.y_m, 0.5 - CAMERA_HEIGHT_M, range_rate, actor.rcs_dbsm))
    return np.array(rows, RADAR_DTYPE)


def _ticks(rate_hz: float, duration_s: float, phase_s: float = 0.0) -> np.ndarray:
    return np.arange(phase_s, duration_s, 1.0 / rate_hz)


def write_drive(out: str | Path, config: DriveConfig = DriveConfig(), storage: str = "mcap",
                progress: bool = False) -> dict[str, int]:
    """Write the drive to a new rosbag2 at `out`; returns message counts per topic."""
    rng = np.random.default_rng(config.seed)
    renderer = synthetic.SceneRenderer(config.seed)
    actors = default_actors(config.ego_speed_mps)
    paints = {actor: tuple(int(c) for c in rng.integers(30, 230, 3)) for actor in actors}
    v = config.ego_speed_mps
    cam = config.camera
    image_topic = f"/{cam}/image/compressed" if config.compressed else f"/{cam}/image"
    events: list[tuple[float, str]] = []
    events += [(t, "camera") for t in _ticks(config.camera_hz, config.duration_s)]
    events += [(t, "lidar") for t in _ticks(config.lidar_hz, config.duration_s, phase_s=0.013)]
    events += [(t, "radar") for t in _ticks(config.radar_hz, config.duration_s, phase_s=0.021)]
    events += [(t, "imu") for t in _ticks(config.imu_hz, config.duration_s, phase_s=0.002)]
    events += [(t, "gps") for t in _ticks(config.gps_hz, config.duration_s, phase_s=0.5)]
    events.sort()
    lat0, lon0 = 37.8716, -122.2727  # heading north from Berkeley
    with bag_io.BagWriter(out, storage=storage) as bag:
        for t, kind in progress_bar(events, desc="writing drive", unit="msg", disable=not progress):
            stamp = START_NS + int(round(t * 1e9))
            if kind == "camera":
                spec = synthetic.SceneSpec(name=f"{stamp}.jpg", weather=config.weather, timeofday=config.timeofday,
                                           scene=config.scene)
                for actor in sorted(actors, key=lambda a: -a.x_at(t, v)):
                    box = project(actor, actor.x_at(t, v))
                    if box is not None:
                        spec.objects.append(synthetic.SceneObject(actor.category, box, paint=paints[actor]))
                rgb = cv2.cvtColor(renderer.render(spec, rng), cv2.COLOR_BGR2RGB)
                if (config.width, config.height) != (synthetic.WIDTH, synthetic.HEIGHT):
                    rgb = cv2.resize(rgb, (config.width, config.height), interpolation=cv2.INTER_AREA)
                msg = (bag_io.compressed_msg(rgb, stamp, f"{cam}_camera") if config.compressed
                       else bag_messages.image_msg(rgb, stamp, f"{cam}_camera"))
                bag.write(image_topic, stamp, msg)
                bag.write("/vehicle/twist", stamp, bag_messages.twist_msg(stamp, v))
            elif kind == "lidar":
                bag.write("/lidar/points", stamp,
                          bag_messages.pointcloud_msg(lidar_points(actors, t, v, rng), stamp, "lidar"))
            elif kind == "radar":
                bag.write("/radar/points", stamp,
                          bag_messages.pointcloud_msg(radar_targets(actors, t, v), stamp, "radar"))
            elif kind == "imu":
                noise = rng.normal(0, 0.02, 3)
                bag.write("/imu/data", stamp, bag_messages.imu_msg(stamp, linear_acceleration=(noise[0], noise[1],
                                                                                          9.81 + noise[2]),
                                                             angular_velocity=(0.0, 0.0, 0.0)))
            else:
                lat = lat0 + v * t / 111_320.0
                bag.write("/gps/fix", stamp, bag_messages.navsat_msg(stamp, lat, lon0, 52.0, horizontal_accuracy_m=5.0))
        return dict(bag.counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blip_train.drives.synthetic_drive",
        description="Write a synthetic drive (camera, LiDAR, radar, GPS, IMU, speed) as a rosbag2 (MCAP).")
    parser.add_argument("--out", required=True, help="bag to write (a new directory)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    parser.add_argument("--camera-hz", type=float, default=10.0, help="camera rate (default 10)")
    parser.add_argument("--width", type=int, default=1280, help="image width (default 1280)")
    parser.add_argument("--height", type=int, default=720, help="image height (default 720)")
    parser.add_argument("--raw", action="store_true", help="sensor_msgs/Image rgb8 instead of CompressedImage jpeg")
    parser.add_argument("--weather", default="clear", choices=synthetic.DRAWN_WEATHERS)
    parser.add_argument("--timeofday", default="daytime", choices=synthetic.DRAWN_TIMES_OF_DAY)
    parser.add_argument("--scene", default="city street", choices=synthetic.DRAWN_SCENES)
    parser.add_argument("--storage", default="mcap", choices=bag_io.STORAGES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = DriveConfig(duration_s=args.duration, camera_hz=args.camera_hz, width=args.width, height=args.height,
                         compressed=not args.raw, weather=args.weather, timeofday=args.timeofday, scene=args.scene,
                         seed=args.seed)
    try:
        counts = write_drive(args.out, config, storage=args.storage, progress=True)
    except bag_io.BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return bag_messages.report_written(args.out, counts)


if __name__ == "__main__":
    sys.exit(main())
