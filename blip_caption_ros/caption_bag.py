"""`caption-bag`: caption a recorded drive offline and write an MCAP to open in Foxglove.

Reads any bag bag_io reads (rosbag2 sqlite3 or MCAP of Humble, Jazzy and Kilted, split or compressed; a ROS 1 bag,
converted to CDR), captions camera frames at a chosen rate with the node's own runtime (captioner backends, image
conversion, LiDAR/radar summaries, nearest-in-time matching within `max_sensor_offset_ms`, the caption JSON
contract), and writes a new rosbag2 in MCAP storage holding every original topic plus, per camera:

    /<cam>/caption                   std_msgs/String         caption JSON (DESIGN.md, "Node contract")
    /<cam>/caption/marker            visualization_msgs/Marker TEXT_VIEW_FACING (the node's marker settings)
    /<cam>/caption/image/compressed  sensor_msgs/CompressedImage, the frame scaled to 640 px wide with the caption

each stamped with the source image's header and logged at the image's receive time. Cameras are found by message
type (sensor_msgs/msg/Image or CompressedImage) whatever their topic is called; a camera's name is its topic without
the image part (`/camera/color/image_raw` -> `camera/color`), `--cameras` selects by name or topic and
`--camera NAME=TOPIC` names one. Every other topic is copied unchanged with its bag's own message definition, so
vendor types and service events pass through; a topic whose type the bag does not define and rosbags does not know
(Humble's sqlite3 bags carry no definitions) is named once and counted as skipped. Zero header stamps are replaced by
the bag's receive time, and the tool says so once per topic.

As in the node, a frame is matched once the bag has moved `max_sensor_offset_ms` past it, so a sensor message that is
nearer in time but recorded later still counts. Frames of several cameras that are ready together are captioned in
one batch, by the node's own CaptionWorker (`caption_frames`): the same decoding, batching, sensor matching, caption
records and error counting, so a bag captioned offline holds what the node would have published. A frame that cannot
be decoded or a batch the model fails on is counted (bad_inputs, failed) and reported, and the bag goes on. Prompt,
caption length and beams default to what the model records (caption_settings), as in the node.

The output is written as `<out>.partial` and renamed when complete: an interrupted run (Ctrl-C) removes it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import bag_io
from .backends import PRECISIONS, CaptionerConfig, ModelLoadError, load_captioner
from .backends.caption_settings import CaptionSettingsError
from .caption_marker import MarkerSettings
from .frame_slots import Frame, FrameSlots
from .imaging import compressed_to_rgb, image_to_rgb
from .overlay import OVERLAY_WIDTH, draw_caption
from .params import NodeParams
from .progress import progress_bar
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
from .worker import CaptionResult, CaptionWorker

POINTCLOUD = "sensor_msgs/msg/PointCloud2"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def decodable_types(info: dict[str, bag_io.TopicInfo]) -> dict[str, str]:
    """topic -> message type, with a note instead of the type for a topic that is not CDR (so it is never decoded)."""
    return {t: i.msgtype if i.serialization_format == "cdr" else f"{i.msgtype}, serialized as {i.serialization_format}"
            for t, i in info.items()}


def camera_name(topic: str) -> str:
    """The camera a driver's image topic belongs to: '/front/image' and '/front/image/compressed' -> 'front',
    '/camera/color/image_raw' -> 'camera/color', '/camera/image_raw/compressed' -> 'camera'."""
    parts = [p for p in topic.split("/") if p]
    if len(parts) > 1 and parts[-1] in ("compressed", "theora", "zstd"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[-1].startswith("image"):
        parts = parts[:-1]
    return "/".join(parts)


def camera_topics(topics: dict[str, str], cameras: list[str] | None = None,
                  named: dict[str, str] | None = None) -> dict[str, str]:
    """topic -> camera name of the image topics to caption, found by message type whatever the topic is called.

    `cameras` selects by camera name or topic; `named` maps topics to the names used in the output
    (`--camera NAME=TOPIC`). Without either, every camera is captioned; a camera with both a raw and a compressed
    topic is captioned once, from the raw one. Raises BagError listing the image topics when nothing matches.
    """
    named = named or {}
    images = {topic: msgtype for topic, msgtype in sorted(topics.items()) if msgtype in IMAGE_TYPES}
    unknown = [t for t in named.values() if t not in images]
    if unknown:
        raise bag_io.BagError(f"--camera: {', '.join(unknown)} is not an image topic of the bag "
                              f"(image topics: {', '.join(images) or 'none'})")
    found = {topic: name for name, topic in named.items()}
    for topic in sorted(images, key=lambda t: images[t] != IMAGE_TYPES[0]):  # raw before compressed
        name = camera_name(topic)
        if topic in found or name in found.values():  # chosen, or the same camera's other transport
            continue
        if (topic in cameras or name in cameras) if cameras is not None else not named:
            found[topic] = name
    if not images:
        raise bag_io.BagError(f"no camera image topics: no topic of type sensor_msgs/msg/Image or CompressedImage "
                              f"(topics: {', '.join(f'{t} ({m})' for t, m in sorted(topics.items())) or 'none'})")
    if not found:
        listed = ", ".join(f"{t} ({camera_name(t)})" for t in images)
        raise bag_io.BagError(f"no camera image topics matching {', '.join(cameras or [])}: image topics (camera "
                              f"name): {listed}; select with --cameras NAME|TOPIC or --camera NAME=TOPIC")
    return found


@dataclass
class CaptionBagStats:
    """What caption-bag did with every message, per camera or topic, for its summary and for caption-bags."""

    frames_seen: Counter = field(default_factory=Counter)
    captioned: Counter = field(default_factory=Counter)
    skipped_by_rate: Counter = field(default_factory=Counter)
    bad_inputs: Counter = field(default_factory=Counter)
    """Per camera (frames that could not be decoded) and per sensor topic (clouds that could not be read)."""
    failed: Counter = field(default_factory=Counter)
    """Frames per camera whose batch the model (or writing) failed on."""
    inference_s: float = 0.0
    copied: Counter = field(default_factory=Counter)
    """Messages per input topic copied into the output."""
    skipped: dict = field(default_factory=dict)
    """Input topic -> (reason, messages) for topics that could not be copied."""
    receive_time_stamps: Counter = field(default_factory=Counter)
    """Messages per topic whose header stamp was zero, timed by the bag's receive time instead."""


def decode_image(msg, msgtype: str) -> np.ndarray:
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return compressed_to_rgb(msg.format, msg.data)
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


class BagCaptioner:
    """Drives the node's runtime (CaptionWorker) over one bag; `run` fills `stats`."""

    #: Problems of one kind printed in full; later ones are only counted (the summary line gives the totals).
    REPORTED_PER_KIND = 3

    def __init__(self, captioner, *, rate_hz: float = 1.0, max_sensor_offset_ms: float = 100.0,
                 lidar_topic: str = "/lidar/points", radar_topic: str = "/radar/points",
                 lidar_settings: LidarSettings = DEFAULT_LIDAR, radar_settings: RadarSettings = DEFAULT_RADAR,
                 overlay: bool = True, progress: bool = False, marker: MarkerSettings | None = None):
        self.captioner = captioner
        self.min_period_ns = int(1e9 / rate_hz) if rate_hz > 0 else 0
        self.max_sensor_offset_ms = max_sensor_offset_ms
        self.max_offset_ns = int(max_sensor_offset_ms * 1e6)
        self.lidar_topic, self.radar_topic = lidar_topic, radar_topic
        self.lidar_settings, self.radar_settings = lidar_settings, radar_settings
        self.overlay = overlay
        self.progress = progress
        self.marker = marker if marker is not None else MarkerSettings.from_params(NodeParams())
        # Offline, everything within the matching window must stay; a generous bound still caps memory.
        self.lidar = SensorBuffer(capacity=512)
        self.radar = SensorBuffer(capacity=512)
        self.stats = CaptionBagStats()
        self._reported: Counter = Counter()
        self._writer: bag_io.BagWriter | None = None

    def run(self, reader: bag_io.BagReader, writer: bag_io.BagWriter, cameras: list[str] | None = None,
            named_cameras: dict[str, str] | None = None) -> None:
        info = reader.topic_info
        decodable = decodable_types(info)
        image_topics = camera_topics(decodable, cameras, named_cameras)
        self._writer = writer
        slots = FrameSlots(sorted(set(image_topics.values())))  # only its per-camera counters are used here
        worker = CaptionWorker(slots, self.captioner, self._write, self._report, lidar=self.lidar, radar=self.radar,
                               max_sensor_offset_ms=self.max_sensor_offset_ms)
        sensor_topics = {t for t in (self.lidar_topic, self.radar_topic) if decodable.get(t) == POINTCLOUD}
        last_captioned: dict[str, int] = {}
        pending: list[Frame] = []
        for message in progress_bar(reader.messages(), total=reader.message_count, desc="captioning bag", unit="msg",
                                    disable=not self.progress):
            self._copy(writer, message, info[message.topic])
            ready = [f for f in pending if message.time_ns - f.stamp_ns > self.max_offset_ns]
            if ready:
                pending = [f for f in pending if f not in ready]
                worker.caption_frames(ready)
            if message.topic in image_topics:
                frame = self._frame(reader, message, image_topics[message.topic], last_captioned)
                if frame is not None:
                    pending.append(frame)
            elif message.topic in sensor_topics:
                self._sensor(reader, message)
        if pending:
            worker.caption_frames(pending)
        for camera, stats in slots.stats.items():
            counts = stats.snapshot()
            for name in ("captioned", "bad_inputs", "failed"):
                if counts[name]:
                    getattr(self.stats, name)[camera] += counts[name]

    def _copy(self, writer: bag_io.BagWriter, message: bag_io.BagMessage, info: bag_io.TopicInfo) -> None:
        """Copy a message unchanged; a topic that cannot be written is named once and counted as skipped."""
        skipped = self.stats.skipped.get(message.topic)
        if skipped is None:
            try:
                writer.write_raw(message.topic, message.msgtype, message.time_ns, message.raw, source=info)
                self.stats.copied[message.topic] += 1
                return
            except bag_io.UnknownTypeError:
                reason = (f"type {message.msgtype or '(none)'} has no definition in the bag and is not a standard "
                          "ROS 2 type")
                tqdm.write(f"warning: not copying {message.topic}: {reason}", file=sys.stderr)
                skipped = (reason, 0)
        self.stats.skipped[message.topic] = (skipped[0], skipped[1] + 1)

    def _stamp(self, message: bag_io.BagMessage, msg) -> int:
        """The header stamp, or the bag's receive time where the stamp is zero (said once per topic)."""
        stamp = bag_io.stamp_of(msg)
        if stamp == 0:
            if not self.stats.receive_time_stamps[message.topic]:
                tqdm.write(f"note: {message.topic} has zero header stamps; using the bag's receive time",
                           file=sys.stderr)
            self.stats.receive_time_stamps[message.topic] += 1
            stamp = message.time_ns
        return stamp

    def _frame(self, reader, message, camera: str, last_captioned: dict[str, int]) -> Frame | None:
        msg = reader.decode(message)
        stamp = self._stamp(message, msg)
        self.stats.frames_seen[camera] += 1
        previous = last_captioned.get(camera)
        if previous is not None and stamp < previous:
            last_captioned.pop(camera)  # time went backwards (a looped recording): start over
        elif previous is not None and stamp - previous < self.min_period_ns:
            self.stats.skipped_by_rate[camera] += 1
            return None
        last_captioned[camera] = stamp
        # Decoded by the worker when captioned (a bad frame is counted there); the outputs are logged at the
        # source's receive time.
        return Frame(camera, stamp, msg.header.frame_id, functools.partial(decode_image, msg, message.msgtype),
                     header=msg.header, bag_time_ns=message.time_ns)

    def _sensor(self, reader, message) -> None:
        msg = reader.decode(message)
        stamp = self._stamp(message, msg)
        is_lidar = message.topic == self.lidar_topic
        try:
            summary = (summarize_lidar(msg, self.lidar_settings) if is_lidar
                       else summarize_radar(msg, self.radar_settings))
        except CloudError as exc:
            self.stats.bad_inputs[message.topic] += 1
            self._report("bad_input", message.topic, exc)
            return
        (self.lidar if is_lidar else self.radar).add(stamp, summary)

    def _report(self, kind: str, source: str, error: BaseException) -> None:
        self._reported[kind] += 1
        if self._reported[kind] <= self.REPORTED_PER_KIND:
            what = "skipping" if kind == "bad_input" else "captioning failed for"
            more = " (further ones are only counted)" if self._reported[kind] == self.REPORTED_PER_KIND else ""
            tqdm.write(f"warning: {what} {source}: {error}{more}", file=sys.stderr)

    def _write(self, results: list[CaptionResult]) -> None:
        """The worker's publish: caption JSON, marker and overlay of each result into the output bag."""
        if results:
            self.stats.inference_s += results[0].record["latency_ms"]["inference"] / 1e3  # one batch, one inference
        for result in results:
            frame, time_ns = result.frame, result.frame.bag_time_ns
            base = f"/{frame.camera}/caption"
            self._writer.write(base, time_ns, bag_io.string_msg(json.dumps(result.record)))
            self._writer.write(f"{base}/marker", time_ns, bag_io.text_marker_msg(
                result.caption, frame.stamp_ns, frame.frame_id, frame.camera, self.marker))
            if self.overlay:
                self._writer.write(f"{base}/image/compressed", time_ns, bag_io.compressed_msg(
                    draw_caption(result.image, result.caption, width=OVERLAY_WIDTH), frame.stamp_ns,
                    frame.frame_id))


def caption_bag(bag: Path, out: Path, captioner, cameras: list[str] | None = None, progress: bool = False,
                named_cameras: dict[str, str] | None = None, **options) -> CaptionBagStats:
    """Caption `bag` into a new MCAP rosbag2 at `out` (written atomically, see bag_io.atomic_output)."""
    runner = BagCaptioner(captioner, progress=progress, **options)
    with bag_io.BagReader(bag) as reader:
        camera_topics(decodable_types(reader.topic_info), cameras, named_cameras)  # before the output exists
        with bag_io.atomic_output(out) as path, bag_io.BagWriter(path, storage="mcap") as writer:
            runner.run(reader, writer, cameras, named_cameras)
    return runner.stats


def add_caption_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and captioning flags, shared with the many-bag tool so both caption a drive the same way."""
    parser.add_argument("--model", required=True, help="save_pretrained directory, export directory or hub id")
    parser.add_argument("--backend", default="torch", help="captioner backend (default torch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--prompt", default=None, help="caption prompt prefix (default: the model's, see "
                        "caption_settings; 'a picture of' for a model that records none)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="caption length limit (default: the model's generation_config.json, else 20)")
    parser.add_argument("--num-beams", type=int, default=None, help="beam width (default: the model's, else 1)")
    parser.add_argument("--allow-download", action="store_true",
                        help="fetch a hub id missing from the local HF cache (default: the cache only)")
    parser.add_argument("--cameras", help="comma-separated camera names or image topics (default: every Image and "
                        "CompressedImage topic; a camera's name is its topic without the image part, e.g. "
                        "/camera/color/image_raw -> camera/color)")
    parser.add_argument("--camera", action="append", default=[], metavar="NAME=TOPIC",
                        help="caption TOPIC as camera NAME (outputs /NAME/caption ...); repeatable")
    parser.add_argument("--rate", type=float, default=1.0, help="captions per second per camera (0: every frame)")
    parser.add_argument("--max-sensor-offset-ms", type=float, default=100.0,
                        help="LiDAR/radar further than this from the image are reported as null (default 100)")
    parser.add_argument("--lidar-topic", default="/lidar/points", help="'' disables")
    parser.add_argument("--radar-topic", default="/radar/points", help="'' disables")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay images")


def captioner_config(args: argparse.Namespace) -> CaptionerConfig:
    """The captioner the flags of add_caption_arguments describe; what they leave unset, the model's recorded
    settings fill once the backend has loaded (and verified) it."""
    return CaptionerConfig(
        model=args.model, backend=args.backend, device=args.device, precision=args.precision,
        prompt=args.prompt, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
        allow_download=args.allow_download)


def note_overrides(captioner, config: CaptionerConfig) -> None:
    """Say on stderr which of the loaded model's recorded caption settings the flags in `config` override."""
    overrides = captioner.settings.overrides(prompt=config.prompt, max_new_tokens=config.max_new_tokens,
                                             num_beams=config.num_beams)
    if overrides:
        print(f"note: overriding the model's caption settings: {'; '.join(overrides)}", file=sys.stderr)


def caption_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of caption_bag (cameras and BagCaptioner options) from add_caption_arguments' flags."""
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    named = {}
    for entry in args.camera:
        name, sep, topic = entry.partition("=")
        if not sep or not name.strip("/ ") or not topic.strip():
            raise ValueError(f"--camera {entry!r}: expected NAME=TOPIC, e.g. front=/camera/image_raw/compressed")
        named[name.strip("/ ")] = topic.strip()
    return {"cameras": cameras, "named_cameras": named, "rate_hz": args.rate,
            "max_sensor_offset_ms": args.max_sensor_offset_ms, "lidar_topic": args.lidar_topic,
            "radar_topic": args.radar_topic, "overlay": not args.no_overlay}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="caption-bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="input bag: rosbag2 directory, .mcap or .db3, or a ROS 1 .bag")
    parser.add_argument("--out", type=Path, required=True, help="output rosbag2 directory (MCAP storage)")
    add_caption_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = caption_options(args)
        with bag_io.BagReader(args.bag) as reader:  # a bag that cannot be captioned is refused before the model loads
            camera_topics(decodable_types(reader.topic_info), options["cameras"], options["named_cameras"])
        config = captioner_config(args)
        captioner = load_captioner(config)
        note_overrides(captioner, config)
    except (ModelLoadError, CaptionSettingsError, ValueError, bag_io.BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        stats = caption_bag(args.bag, args.out, captioner, progress=True, **options)
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
          f"{captioned / elapsed:.1f} frames/s overall; bad inputs: {sum(stats.bad_inputs.values())}, "
          f"failed: {sum(stats.failed.values())}", file=sys.stderr)
    print(f"copied {sum(stats.copied.values())} messages of {len(stats.copied)} topics unchanged", file=sys.stderr)
    for topic, (reason, count) in sorted(stats.skipped.items()):
        print(f"skipped {count} messages of {topic}: {reason}", file=sys.stderr)
    print(f"open in Foxglove: {mcap}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
