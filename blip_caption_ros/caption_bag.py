"""`caption-bag`: caption a recorded drive offline and write an MCAP to open in Foxglove.

Reads a rosbag2 (mcap or sqlite3) with rosbags, captions camera frames at a chosen rate with the node's own
runtime (captioner backends, image conversion, LiDAR/radar summaries, nearest-in-time matching within
`max_sensor_offset_ms`, the caption JSON contract), and writes a new rosbag2 in MCAP storage holding every original
topic plus, per camera:

    /<cam>/caption                   std_msgs/String         caption JSON (DESIGN.md, "Node contract")
    /<cam>/caption/marker            visualization_msgs/Marker TEXT_VIEW_FACING
    /<cam>/caption/image/compressed  sensor_msgs/CompressedImage, the frame with the caption drawn on it

each stamped with the source image's header and logged at the image's receive time. As in the node, a frame is
matched once the bag has moved `max_sensor_offset_ms` past it, so a sensor message that is nearer in time but
recorded later still counts. Frames of several cameras that are ready together are captioned in one batch.

The output is written as `<out>.partial` and renamed when complete: an interrupted run (Ctrl-C) removes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import bag_io
from .caption_message import Latency, caption_record
from .captioner import CaptionerConfig, ModelLoadError, load_captioner
from .imaging import ImageConversionError, compressed_to_rgb, image_to_rgb
from .overlay import draw_caption
from .sensors import (
    DEFAULT_LIDAR,
    DEFAULT_RADAR,
    CloudError,
    LidarSettings,
    RadarSettings,
    summarize_lidar,
    summarize_radar,
)
from .sync import SensorBuffer

IMAGE_TYPES = {"sensor_msgs/msg/Image": "/image", "sensor_msgs/msg/CompressedImage": "/image/compressed"}


@dataclass
class PendingFrame:
    camera: str
    stamp_ns: int
    time_ns: int
    frame_id: str
    rgb: np.ndarray


@dataclass
class CaptionBagStats:
    frames_seen: Counter = field(default_factory=Counter)
    captioned: Counter = field(default_factory=Counter)
    skipped_by_rate: Counter = field(default_factory=Counter)
    bad_inputs: Counter = field(default_factory=Counter)
    inference_s: float = 0.0


def camera_topics(topics: dict[str, str], cameras: list[str] | None) -> dict[str, str]:
    """topic -> camera name for the image topics to caption (`/<cam>/image` or `/<cam>/image/compressed`)."""
    found = {}
    for topic, msgtype in topics.items():
        suffix = IMAGE_TYPES.get(msgtype)
        if suffix and topic.endswith(suffix):
            camera = topic[: -len(suffix)].lstrip("/")
            if cameras is None or camera in cameras:
                found[topic] = camera
    return found


def decode_image(msg, msgtype: str) -> np.ndarray:
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return compressed_to_rgb(msg.format, msg.data)
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


class BagCaptioner:
    """Drives the runtime over one bag; `run` returns the statistics."""

    def __init__(self, captioner, *, rate_hz: float = 1.0, max_sensor_offset_ms: float = 100.0,
                 lidar_topic: str = "/lidar/points", radar_topic: str = "/radar/points",
                 lidar_settings: LidarSettings = DEFAULT_LIDAR, radar_settings: RadarSettings = DEFAULT_RADAR,
                 overlay: bool = True, progress: bool = False):
        self.captioner = captioner
        self.min_period_ns = int(1e9 / rate_hz) if rate_hz > 0 else 0
        self.max_offset_ns = int(max_sensor_offset_ms * 1e6)
        self.lidar_topic, self.radar_topic = lidar_topic, radar_topic
        self.lidar_settings, self.radar_settings = lidar_settings, radar_settings
        self.overlay = overlay
        self.progress = progress
        # Offline, everything within the matching window must stay; a generous bound still caps memory.
        self.lidar = SensorBuffer(capacity=512)
        self.radar = SensorBuffer(capacity=512)
        self.stats = CaptionBagStats()

    def run(self, reader: bag_io.BagReader, writer: bag_io.BagWriter, cameras: list[str] | None = None) -> None:
        topics = reader.topics
        image_topics = camera_topics(topics, cameras)
        if not image_topics:
            raise bag_io.BagError(f"{reader.path}: no camera image topics"
                                  f"{' for ' + ', '.join(cameras) if cameras else ''} (topics: {', '.join(topics)})")
        last_captioned: dict[str, int] = {}
        pending: list[PendingFrame] = []
        for message in tqdm(reader.messages(), total=reader.message_count, desc="captioning bag", unit="msg",
                            disable=not self.progress):
            writer.write_raw(message.topic, message.msgtype, message.time_ns, message.raw)
            ready = [p for p in pending if message.time_ns - p.stamp_ns > self.max_offset_ns]
            if ready:
                pending = [p for p in pending if p not in ready]
                self._caption(ready, writer)
            if message.topic in image_topics:
                frame = self._frame(reader, message, image_topics[message.topic], last_captioned)
                if frame is not None:
                    pending.append(frame)
            elif message.topic in (self.lidar_topic, self.radar_topic):
                self._sensor(reader, message)
        if pending:
            self._caption(pending, writer)

    def _frame(self, reader, message, camera: str, last_captioned: dict[str, int]) -> PendingFrame | None:
        msg = reader.decode(message)
        stamp = bag_io.stamp_of(msg)
        self.stats.frames_seen[camera] += 1
        previous = last_captioned.get(camera)
        if previous is not None and stamp < previous:
            last_captioned.pop(camera)  # time went backwards (a looped recording): start over
        elif previous is not None and stamp - previous < self.min_period_ns:
            self.stats.skipped_by_rate[camera] += 1
            return None
        try:
            rgb = decode_image(msg, message.msgtype)
        except ImageConversionError as exc:
            self.stats.bad_inputs[camera] += 1
            tqdm.write(f"warning: {message.topic} at {stamp} ns: {exc}", file=sys.stderr)
            return None
        last_captioned[camera] = stamp
        return PendingFrame(camera, stamp, message.time_ns, msg.header.frame_id, rgb)

    def _sensor(self, reader, message) -> None:
        msg = reader.decode(message)
        stamp = bag_io.stamp_of(msg)
        is_lidar = message.topic == self.lidar_topic
        try:
            summary = (summarize_lidar(msg, self.lidar_settings) if is_lidar
                       else summarize_radar(msg, self.radar_settings))
        except CloudError as exc:
            self.stats.bad_inputs[message.topic] += 1
            tqdm.write(f"warning: {message.topic} at {stamp} ns: {exc}", file=sys.stderr)
            return
        (self.lidar if is_lidar else self.radar).add(stamp, summary)

    def _caption(self, frames: list[PendingFrame], writer: bag_io.BagWriter) -> None:
        start = time.perf_counter()
        captions = self.captioner.caption([f.rgb for f in frames])
        inference_s = time.perf_counter() - start
        self.stats.inference_s += inference_s
        latency = Latency(0.0, inference_s * 1e3, inference_s * 1e3)
        for frame, caption in zip(frames, captions, strict=True):
            record = caption_record(
                camera=frame.camera, stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, caption=caption,
                backend=self.captioner.backend, model=self.captioner.model_name, latency=latency,
                lidar=self.lidar.nearest(frame.stamp_ns, self.max_offset_ns),
                radar=self.radar.nearest(frame.stamp_ns, self.max_offset_ns))
            base = f"/{frame.camera}/caption"
            writer.write(base, frame.time_ns, bag_io.string_msg(json.dumps(record)))
            writer.write(f"{base}/marker", frame.time_ns,
                         bag_io.text_marker_msg(caption, frame.stamp_ns, frame.frame_id, namespace=frame.camera))
            if self.overlay:
                writer.write(f"{base}/image/compressed", frame.time_ns,
                             bag_io.compressed_msg(draw_caption(frame.rgb, caption), frame.stamp_ns, frame.frame_id))
            self.stats.captioned[frame.camera] += 1


def caption_bag(bag: Path, out: Path, captioner, cameras: list[str] | None = None, progress: bool = False,
                **options) -> CaptionBagStats:
    """Caption `bag` into a new MCAP rosbag2 at `out` (written atomically, see bag_io.atomic_output)."""
    runner = BagCaptioner(captioner, progress=progress, **options)
    with bag_io.BagReader(bag) as reader, bag_io.atomic_output(out) as path, \
            bag_io.BagWriter(path, storage="mcap") as writer:
        runner.run(reader, writer, cameras)
    return runner.stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="caption-bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="input rosbag2 (directory, .mcap or .db3)")
    parser.add_argument("--out", type=Path, required=True, help="output rosbag2 directory (MCAP storage)")
    parser.add_argument("--model", required=True, help="save_pretrained directory, export directory or hub id")
    parser.add_argument("--backend", default="torch", help="captioner backend (default torch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--prompt", default="", help="caption prompt prefix, e.g. 'a picture of'")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="caption length limit (default 40)")
    parser.add_argument("--cameras", help="comma-separated camera names (default: every image topic)")
    parser.add_argument("--rate", type=float, default=1.0, help="captions per second per camera (0: every frame)")
    parser.add_argument("--max-sensor-offset-ms", type=float, default=100.0,
                        help="LiDAR/radar further than this from the image are reported as null (default 100)")
    parser.add_argument("--lidar-topic", default="/lidar/points", help="'' disables")
    parser.add_argument("--radar-topic", default="/radar/points", help="'' disables")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay images")
    args = parser.parse_args(argv)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    try:
        captioner = load_captioner(CaptionerConfig(
            model=args.model, backend=args.backend, device=args.device, precision=args.precision,
            prompt=args.prompt, max_new_tokens=args.max_new_tokens))
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        stats = caption_bag(args.bag, args.out, captioner, cameras, progress=True, rate_hz=args.rate,
                            max_sensor_offset_ms=args.max_sensor_offset_ms, lidar_topic=args.lidar_topic,
                            radar_topic=args.radar_topic, overlay=not args.no_overlay)
    except bag_io.BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: removed the partial output of {args.out}", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start
    captioned = sum(stats.captioned.values())
    (mcap,) = sorted(args.out.glob("*.mcap"))[:1] or (args.out,)
    print(f"captioned {captioned} frames ({', '.join(f'{c} {n}' for c, n in sorted(stats.captioned.items()))}) "
          f"in {elapsed:.1f} s: {captioned / max(stats.inference_s, 1e-9):.1f} frames/s of inference, "
          f"{captioned / elapsed:.1f} frames/s overall; bad inputs: {sum(stats.bad_inputs.values())}", file=sys.stderr)
    print(f"open in Foxglove: {mcap}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
