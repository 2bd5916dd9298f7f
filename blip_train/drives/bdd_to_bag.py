"""BDD100K drives and stills -> rosbag2, so they replay through the caption node like a vehicle log.

`bdd-to-bag video`: a BDD100K video (40 s, 30 fps, 1280x720 .mov) and its GPS/IMU info JSON become one bag on the
video's own clock: frame i is stamped `startTime + i / fps` (startTime from the info file, epoch ms), and every
GPS/IMU sample keeps its own recorded timestamp. Topics:

    /<camera>/image/compressed  sensor_msgs/CompressedImage (jpeg)  -- or /<camera>/image (rgb8) with --raw
    /gps/fix                    sensor_msgs/NavSatFix               from `gps[]` (or `locations[]`)
    /vehicle/twist              geometry_msgs/TwistStamped          GPS speed (m/s) in linear.x
    /imu/data                   sensor_msgs/Imu                     `accelerometer[]`, nearest `gyro[]` sample

A missing or empty info file gives a warning and a camera-only bag (stamps then start at `--start-sec`).

`bdd-to-bag images`: a folder of BDD100K stills with det_20 (or 2018) labels: one frame per image at `--rate`, plus
`/<camera>/labels` (std_msgs/String JSON: name, the label-derived caption, attributes) for checking captions.

Bags are written atomically (bag_io.atomic_output): an interrupted run never leaves something that looks like a
finished bag.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

from blip_caption_ros import bag_io
from blip_caption_ros.input_limits import IMAGE_PIXELS, InputTooLargeError
from blip_caption_ros.progress import progress_bar
from blip_train.captions import caption_frame
from blip_train.datasets.bdd100k import find_label_file, image_path, load_frames
from blip_train.datasets.records import INFO_FILE_BYTES, LabelFormatError
from blip_train.drives import bag_messages


class ConversionError(RuntimeError):
    """An input that cannot be converted; the message names it."""


def load_info(path: Path | None) -> dict | None:
    """The info JSON as a dict, or None (with a warning) when it is missing or empty."""
    if path is None or not path.is_file():
        warnings.warn(f"no info JSON{f' at {path}' if path else ''}: writing a camera-only bag", stacklevel=2)
        return None
    try:  # real info files are < 1 MB; BLIP_MAX_INFO_BYTES (default 64 MiB) bounds what is read
        INFO_FILE_BYTES.check(path.stat().st_size, f"{path}: BDD100K info file")
    except InputTooLargeError as exc:
        raise ConversionError(str(exc)) from None
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        warnings.warn(f"{path} is empty: writing a camera-only bag", stacklevel=2)
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ConversionError(f"{path}: JSON nested too deeply to be an info file") from None
    if not isinstance(info, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(info).__name__}")
    if not info:
        warnings.warn(f"{path} has no data: writing a camera-only bag", stacklevel=2)
        return None
    return info


def find_info(video: Path) -> Path | None:
    """The info JSON of a video: beside it, or in BDD100K's layout (videos/100k/<split> -> info/100k/<split>)."""
    beside = video.with_suffix(".json")
    if beside.is_file():
        return beside
    parts = video.parts
    if len(parts) >= 4 and parts[-4] == "videos":
        candidate = Path(*parts[:-4], "info", *parts[-3:-1], video.stem + ".json")
        if candidate.is_file():
            return candidate
    return None


def _samples(info: dict, key: str, path: Path) -> list[dict]:
    samples = info.get(key) or []
    if not isinstance(samples, list):
        raise ConversionError(f"{path}: '{key}' is not a list")
    return [s for s in samples if isinstance(s, dict) and isinstance(s.get("timestamp"), (int, float))]


def _number(sample: dict, *keys: str, default: float = float("nan")) -> float:
    for key in keys:
        value = sample.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return default


def write_info_messages(bag: bag_io.BagWriter, info: dict, info_path: Path) -> None:
    """GPS fixes + speed and IMU samples, each on its own recorded timestamp (epoch ms -> ns)."""
    fixes = _samples(info, "gps", info_path) or _samples(info, "locations", info_path)
    for fix in fixes:
        stamp = int(fix["timestamp"] * 1_000_000)
        lat, lon = _number(fix, "latitude"), _number(fix, "longitude")
        if not (np.isfinite(lat) and np.isfinite(lon)):
            continue
        accuracy = _number(fix, "horizontal accuracy", "accuracy")
        bag.write("/gps/fix", stamp, bag_messages.navsat_msg(
            stamp, lat, lon, _number(fix, "altitude", default=0.0),
            horizontal_accuracy_m=accuracy if np.isfinite(accuracy) and accuracy >= 0 else None))
        speed = _number(fix, "speed")
        if np.isfinite(speed) and speed >= 0:
            bag.write("/vehicle/twist", stamp, bag_messages.twist_msg(stamp, speed))
    gyro = _samples(info, "gyro", info_path)
    gyro_times = np.array([g["timestamp"] for g in gyro], dtype=float)
    for acc in _samples(info, "accelerometer", info_path):
        angular = None
        if gyro:
            nearest = int(np.abs(gyro_times - acc["timestamp"]).argmin())
            if abs(gyro_times[nearest] - acc["timestamp"]) <= 50:  # ms
                g = gyro[nearest]
                angular = (_number(g, "x"), _number(g, "y"), _number(g, "z"))
        stamp = int(acc["timestamp"] * 1_000_000)
        bag.write("/imu/data", stamp, bag_messages.imu_msg(
            stamp, linear_acceleration=(_number(acc, "x"), _number(acc, "y"), _number(acc, "z")),
            angular_velocity=angular))


def _camera_message(rgb: np.ndarray, stamp: int, camera: str, raw: bool, quality: int):
    frame_id = f"{camera}_camera"
    if raw:
        return f"/{camera}/image", bag_messages.image_msg(rgb, stamp, frame_id)
    return f"/{camera}/image/compressed", bag_io.compressed_msg(rgb, stamp, frame_id, quality)


def video_to_bag(video: Path, out: Path, info_path: Path | None = None, rate_hz: float | None = None,
                 camera: str = "front", raw: bool = False, quality: int = 90, storage: str = "mcap",
                 start_sec: float = 1.0, progress: bool = False) -> dict[str, int]:
    """Convert one video (+ info) to a bag at `out`; returns message counts per topic."""
    if not video.is_file():
        raise ConversionError(f"{video}: no such video")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ConversionError(f"{video}: cannot open as a video (corrupt, or a codec OpenCV lacks)")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        IMAGE_PIXELS.check(width * height, f"{video}: video frame {width}x{height}")
    except InputTooLargeError as exc:
        capture.release()
        raise ConversionError(str(exc)) from None
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    n_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    info = load_info(info_path if info_path is not None else find_info(video))
    start_ns = int(info["startTime"] * 1_000_000) if info and isinstance(info.get("startTime"), (int, float)) \
        else int(start_sec * 1e9)
    step = max(1, round(fps / rate_hz)) if rate_hz else 1
    try:
        with bag_io.atomic_output(out) as path, bag_io.BagWriter(path, storage=storage) as bag:
            index = 0
            with progress_bar(total=n_frames, desc=f"{video.name}", unit="frame", disable=not progress) as bar:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    if index % step == 0:
                        stamp = start_ns + round(index * 1e9 / fps)
                        topic, msg = _camera_message(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp, camera, raw,
                                                     quality)
                        bag.write(topic, stamp, msg)
                    index += 1
                    bar.update()
            if index == 0:
                raise ConversionError(f"{video}: no frame could be decoded")
            if info:
                write_info_messages(bag, info, info_path or find_info(video))
            counts = dict(bag.counts)
        return counts
    finally:
        capture.release()


def images_to_bag(root: Path, split: str, out: Path, labels: Path | None = None, rate_hz: float = 1.0,
                  camera: str = "front", raw: bool = False, quality: int = 90, storage: str = "mcap",
                  limit: int | None = None, start_sec: float = 1.0, progress: bool = False) -> dict[str, int]:
    """BDD100K stills + labels -> a bag with one frame per image; unreadable images are skipped and counted."""
    label_file = labels or find_label_file(root, split)
    frames, _ = load_frames(label_file)
    frames = frames[:limit] if limit else frames
    skipped: list[str] = []
    with bag_io.atomic_output(out) as path:
        with bag_io.BagWriter(path, storage=storage) as bag:
            for i, frame in enumerate(progress_bar(frames, desc="images", unit="frame", disable=not progress)):
                path = image_path(root, split, frame.name)
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if bgr is None:
                    skipped.append(str(path))
                    continue
                stamp = int(start_sec * 1e9) + round(i * 1e9 / rate_hz)
                topic, msg = _camera_message(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp, camera, raw, quality)
                bag.write(topic, stamp, msg)
                reference = {"name": frame.name, "caption": caption_frame(frame), "attributes": frame.attributes}
                bag.write(f"/{camera}/labels", stamp, bag_io.string_msg(json.dumps(reference)))
            counts = dict(bag.counts)
        if len(skipped) == len(frames) and frames:
            raise ConversionError(f"{root}: none of the {len(frames)} images could be read (first: {skipped[0]})")
    for path in skipped[:10]:
        warnings.warn(f"skipped unreadable or missing image {path}", stacklevel=2)
    if skipped:
        warnings.warn(f"{len(skipped)} of {len(frames)} images skipped", stacklevel=2)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bdd-to-bag", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="bag to write (a new directory)")
    common.add_argument("--camera", default="front", help="camera name: topics /<camera>/image[/compressed]")
    common.add_argument("--raw", action="store_true", help="write sensor_msgs/Image rgb8 instead of jpeg")
    common.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    common.add_argument("--storage", default="mcap", choices=bag_io.STORAGES, help="rosbag2 storage (default mcap)")
    common.add_argument("--start-sec", type=float, default=1.0,
                        help="first stamp when no info JSON gives one (default 1.0 s; 0 reads as 'unset' in ROS)")
    video = sub.add_parser("video", parents=[common], help="a BDD100K video + info JSON")
    video.add_argument("video", type=Path, help="the .mov file")
    video.add_argument("--info", type=Path, help="info JSON (default: beside the video or info/100k/<split>/)")
    video.add_argument("--rate", type=float, help="camera rate in Hz (default: every frame)")
    images = sub.add_parser("images", parents=[common], help="BDD100K stills + det_20/2018 labels")
    images.add_argument("--root", type=Path, required=True, help="BDD100K root (images/100k/<split>/...)")
    images.add_argument("--split", default="val", help="split (default val)")
    images.add_argument("--labels", type=Path, help="label file (default: found under --root)")
    images.add_argument("--rate", type=float, default=1.0, help="frames per second of bag time (default 1)")
    images.add_argument("--limit", type=int, help="at most this many frames")
    args = parser.parse_args(argv)
    warnings.simplefilter("always")
    warnings.formatwarning = lambda message, *_: f"warning: {message}\n"
    try:
        if args.command == "video":
            counts = video_to_bag(args.video, args.out, args.info, args.rate, args.camera, args.raw, args.quality,
                                  args.storage, args.start_sec, progress=True)
        else:
            counts = images_to_bag(args.root, args.split, args.out, args.labels, args.rate, args.camera, args.raw,
                                   args.quality, args.storage, args.limit, args.start_sec, progress=True)
    except (ConversionError, LabelFormatError, bag_io.BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return bag_messages.report_written(args.out, counts)


if __name__ == "__main__":
    sys.exit(main())
