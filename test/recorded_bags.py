"""Bags shaped like real recordings, built from scratch: vendor types with their definitions, driver topic names,
split sqlite3 files, service events, bags without definitions (Humble sqlite3), ROS 1 bags, zero stamps, bursts.

Each builder returns what it wrote, so tests can assert counts and contents against it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import yaml
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

VENDOR_TYPE = "acme_msgs/msg/RadarStatus"
VENDOR_DEFINITION = "std_msgs/Header header\nuint32 tracks\nfloat32 temperature_c\nstring mode\n"
SERVICE_EVENT_TYPE = "example_interfaces/srv/AddTwoInts_Event"
SERVICE_EVENT_TOPIC = "/add/_service_event"
SERVICE_EVENT_DEFINITION = "int64 a\nint64 b\n---\nint64 sum\n"  # what rosbag2 records for a service event
EMPTY_TYPE = "acme_msgs/msg/Heartbeat"
EMPTY_CDR = bytes([0, 1, 0, 0, 0])  # CDR of a message without fields: one placeholder byte
IMAGE_TOPIC = "/camera/color/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
START_NS = 1_700_000_000_000_000_000


def ros2_store():
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(VENDOR_DEFINITION, VENDOR_TYPE))
    return store


def _header(store, stamp_ns: int, frame_id: str):
    time = store.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return store.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def jpeg(value: int, size=(48, 64)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    image[:, : size[1] // 2] = value
    return cv2.imencode(".jpg", image)[1].reshape(-1)


def compressed(store, stamp_ns: int, value: int):
    return store.types["sensor_msgs/msg/CompressedImage"](header=_header(store, stamp_ns, "camera"), format="jpeg",
                                                          data=jpeg(value))


def raw_image(store, stamp_ns: int, value: int):
    pixels = np.full((36, 48, 3), value, np.uint8)
    return store.types["sensor_msgs/msg/Image"](header=_header(store, stamp_ns, "color"), height=36, width=48,
                                                encoding="rgb8", is_bigendian=0, step=48 * 3, data=pixels.reshape(-1))


def vendor(store, stamp_ns: int, tracks: int):
    return store.types[VENDOR_TYPE](header=_header(store, stamp_ns, "radar"), tracks=tracks, temperature_c=41.5,
                                    mode="long-range")


def driver_bag(path: Path, storage: str = "mcap", frames: int = 10, period_ns: int = 100_000_000,
               zero_stamps: bool = False) -> dict[str, list]:
    """A driver's recording: raw + compressed cameras under driver names, a vendor type, a vendor type without
    fields (its definition is empty), service events.

    Returns topic -> [(receive time, message or raw bytes)].
    """
    store = ros2_store()
    written: dict[str, list] = {}
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        conns = {
            IMAGE_TOPIC: writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=store),
            COMPRESSED_TOPIC: writer.add_connection(COMPRESSED_TOPIC, "sensor_msgs/msg/CompressedImage",
                                                    typestore=store),
            "/radar/status": writer.add_connection("/radar/status", VENDOR_TYPE, typestore=store),
            "/heartbeat": writer.add_connection("/heartbeat", EMPTY_TYPE, msgdef="", rihs01="RIHS01_" + "b" * 64),
            "/add/_service_event": writer.add_connection("/add/_service_event", SERVICE_EVENT_TYPE,
                                                         msgdef=SERVICE_EVENT_DEFINITION, rihs01="RIHS01_" + "a" * 64),
        }
        for i in range(frames):
            time_ns = START_NS + i * period_ns
            stamp = 0 if zero_stamps else time_ns - 5_000_000
            for topic, msg in ((IMAGE_TOPIC, raw_image(store, stamp, 20 * i % 256)),
                               (COMPRESSED_TOPIC, compressed(store, stamp, 20 * i % 256)),
                               ("/radar/status", vendor(store, stamp, i))):
                writer.write(conns[topic], time_ns, store.serialize_cdr(msg, msg.__msgtype__))
                written.setdefault(topic, []).append((time_ns, msg))
            writer.write(conns["/heartbeat"], time_ns + 2, EMPTY_CDR)  # a type without fields: empty definition
            written.setdefault("/heartbeat", []).append((time_ns + 2, EMPTY_CDR))
            if i % 3 == 0:
                event = bytes([0, 1, 0, 0]) + i.to_bytes(8, "little") * 3  # opaque to every tool: copied as is
                writer.write(conns["/add/_service_event"], time_ns + 1, event)
                written.setdefault("/add/_service_event", []).append((time_ns + 1, event))
    return written


def drop_definitions(path: Path) -> None:
    """Make a sqlite3 bag look like Humble's: no message_definitions table."""
    (db,) = path.glob("*.db3")
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE message_definitions")


def split_sqlite3_bag(path: Path, per_file: int = 40, files: int = 3) -> list[tuple[str, int, str]]:
    """Strings split over several sqlite3 files, as `ros2 bag record --max-bag-size` leaves them, with a
    metadata.yaml whose starting_time is that of the *last* file (rosbag2's own split test bags look like this).

    Returns (topic, receive time, text) of every message.
    """
    store = get_typestore(Stores.ROS2_HUMBLE)
    string = store.types["std_msgs/msg/String"]
    path.mkdir()
    sent, names = [], []
    for part in range(files):
        part_dir = path.parent / f"{path.name}_part{part}"
        with Writer(part_dir, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
            conns = {t: writer.add_connection(t, "std_msgs/msg/String", typestore=store) for t in ("/a", "/b")}
            for i in range(per_file):
                topic = "/a" if i % 2 else "/b"
                time_ns = START_NS + (part * per_file + i) * 10_000_000
                text = f"{topic} {part}.{i}"
                writer.write(conns[topic], time_ns, store.serialize_cdr(string(data=text), "std_msgs/msg/String"))
                sent.append((topic, time_ns, text))
        (db,) = part_dir.glob("*.db3")
        names.append(f"{path.name}_{part}.db3")
        db.rename(path / names[-1])
    counts = {t: sum(1 for s in sent if s[0] == t) for t in ("/a", "/b")}
    qos = ("- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n    sec: 0\n    nsec: 0\n"
           "  lifespan:\n    sec: 0\n    nsec: 0\n  liveliness: 1\n  liveliness_lease_duration:\n    sec: 0\n"
           "    nsec: 0\n  avoid_ros_namespace_conventions: false")
    metadata = {"rosbag2_bagfile_information": {
        "version": 5, "storage_identifier": "sqlite3", "relative_file_paths": names,
        "starting_time": {"nanoseconds_since_epoch": START_NS + (files - 1) * per_file * 10_000_000},
        "duration": {"nanoseconds": per_file * 10_000_000}, "message_count": len(sent),
        "compression_format": "", "compression_mode": "",
        "topics_with_message_count": [
            {"topic_metadata": {"name": t, "type": "std_msgs/msg/String", "serialization_format": "cdr",
                                "offered_qos_profiles": qos}, "message_count": n} for t, n in counts.items()]}}
    (path / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    return sent


def ros1_bag(path: Path, frames: int = 6) -> dict[str, list]:
    """A ROS 1 bag (rosbag format 2.0): compressed camera frames under a driver name and a vendor type."""
    store = get_typestore(Stores.ROS1_NOETIC)
    ros1_vendor = VENDOR_DEFINITION.replace("std_msgs/Header", "Header")
    store.register(get_types_from_msg(ros1_vendor, VENDOR_TYPE))
    header_type, time_type = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    written: dict[str, list] = {}
    with Ros1Writer(path) as writer:
        cam = writer.add_connection(COMPRESSED_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=store)
        status = writer.add_connection("/radar/status", VENDOR_TYPE, typestore=store)
        for i in range(frames):
            time_ns = START_NS + i * 500_000_000
            header = header_type(seq=i, stamp=time_type(sec=time_ns // 10**9, nanosec=time_ns % 10**9),
                                 frame_id="camera")
            image = store.types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=jpeg(30 * i))
            radar = store.types[VENDOR_TYPE](header=header, tracks=i, temperature_c=40.0, mode="short")
            writer.write(cam, time_ns, store.serialize_ros1(image, image.__msgtype__))
            writer.write(status, time_ns, store.serialize_ros1(radar, VENDOR_TYPE))
            written.setdefault(COMPRESSED_TOPIC, []).append((time_ns, image))
            written.setdefault("/radar/status", []).append((time_ns, radar))
    return written


def burst_bag(path: Path, messages: int = 400) -> list[str]:
    """Many messages recorded with one receive time (a latched topic's backlog, a driver's startup burst)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    texts = [f"burst {i}" for i in range(messages)]
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/burst", "std_msgs/msg/String", typestore=store)
        for text in texts:
            writer.write(conn, START_NS, store.serialize_cdr(store.types["std_msgs/msg/String"](data=text),
                                                             "std_msgs/msg/String"))
    return texts
