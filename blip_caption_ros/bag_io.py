"""Bags for the vehicle's offline tools (caption-bag, bag-replay): reading any recorded bag, writing the captioned one.

Reading goes through bag_storage (sqlite3 and MCAP of every rosbag2 version, split and compressed bags, ROS 1 bags
converted to CDR); messages come raw, and only the types a tool needs are decoded, with rosbags' ROS 2 Humble type
store (identical on the wire to Jazzy/Kilted for those types). Writing uses rosbags' rosbag2 writer; a topic copied
from another bag keeps that bag's own message definition, so custom and vendor types pass through unchanged. The
builders of the messages caption-bag writes (caption String, RViz marker, overlay CompressedImage) live here; those
only the workstation's drive tools write are in blip_train.drives.bag_messages. A bag is untrusted input: a message
over BLIP_MAX_BAG_MESSAGE_BYTES (default 256 MiB, see input_limits) is refused before it is decoded, and image sizes
are checked again before decoding (imaging).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .bag_storage import Ros1Storage, StorageError, TopicInfo, open_storage
from .caption_marker import MarkerSettings, fill_text_marker
from .caption_message import stamp_dict, stamp_ns
from .input_limits import BAG_MESSAGE_BYTES, InputTooLargeError

DEFAULT_STORE = "ros2_humble"
STORAGES = ("mcap", "sqlite3")


class BagError(RuntimeError):
    """A bag that cannot be read or written; the message names the bag and the reason."""


@functools.cache
def typestore(store: str = DEFAULT_STORE):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores(store))


def msg_type(name: str, store: str = DEFAULT_STORE):
    """The rosbags dataclass of a message type, e.g. msg_type("sensor_msgs/msg/Image")."""
    return typestore(store).types[name]


def _time(stamp_ns: int):
    return msg_type("builtin_interfaces/msg/Time")(**stamp_dict(int(stamp_ns)))


def header(stamp_ns: int, frame_id: str):
    return msg_type("std_msgs/msg/Header")(stamp=_time(stamp_ns), frame_id=frame_id)


def stamp_of(msg) -> int:
    """The header stamp of a message, in nanoseconds."""
    return stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)



def compressed_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str, quality: int = 90):
    """sensor_msgs/CompressedImage, jpeg (as image_transport's compressed plugin writes it)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise BagError(f"JPEG encoding failed for a {rgb.shape} image")
    return msg_type("sensor_msgs/msg/CompressedImage")(
        header=header(stamp_ns, frame_id), format="rgb8; jpeg compressed bgr8", data=encoded.reshape(-1))






def string_msg(text: str):
    return msg_type("std_msgs/msg/String")(data=text)


def text_marker_msg(text: str, stamp_ns: int, frame_id: str, camera: str, settings: MarkerSettings):
    """visualization_msgs/Marker of a caption, as the node publishes it (caption_marker.fill_text_marker)."""
    marker = msg_type("visualization_msgs/msg/Marker")
    vector3, point = msg_type("geometry_msgs/msg/Vector3"), msg_type("geometry_msgs/msg/Point")
    blank = marker(
        header=header(0, ""), ns="", id=0, type=0, action=0,
        pose=msg_type("geometry_msgs/msg/Pose")(position=point(x=0.0, y=0.0, z=0.0),
                                                orientation=msg_type("geometry_msgs/msg/Quaternion")(
                                                    x=0.0, y=0.0, z=0.0, w=1.0)),
        scale=vector3(x=0.0, y=0.0, z=0.0), color=msg_type("std_msgs/msg/ColorRGBA")(r=0.0, g=0.0, b=0.0, a=0.0),
        lifetime=msg_type("builtin_interfaces/msg/Duration")(sec=0, nanosec=0), frame_locked=False, points=[],
        colors=[], texture_resource="",
        texture=msg_type("sensor_msgs/msg/CompressedImage")(header=header(0, ""), format="",
                                                            data=np.zeros(0, np.uint8)),
        uv_coordinates=[], text="", mesh_resource="",
        mesh_file=msg_type("visualization_msgs/msg/MeshFile")(filename="", data=np.zeros(0, np.uint8)),
        mesh_use_embedded_materials=False)
    return fill_text_marker(blank, header(stamp_ns, frame_id), camera, text, settings)


@contextlib.contextmanager
def atomic_output(out: str | Path) -> Iterator[Path]:
    """The path to write a new bag to; it appears at `out` only when the block completes.

    The bag is written inside `<out>.partial/` (under its final name, which rosbag2 uses for its files) and moved
    into place at the end, so an interrupted or failed run never leaves something that looks like a finished bag.
    """
    out = Path(out)
    if out.exists():
        raise BagError(f"{out}: already exists; remove it or choose another output")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an earlier interrupted run
    staging.mkdir(parents=True)
    try:
        yield staging / out.name
        (staging / out.name).rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class BagWriter:
    """A rosbag2 writer (mcap by default) that registers topics on first use and serialises messages."""

    def __init__(self, path: str | Path, storage: str = "mcap", store: str = DEFAULT_STORE):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists; remove it or choose another output")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._store = typestore(store)
        self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self._writer.close()

    def connection(self, topic: str, msgtype: str, source: TopicInfo | None = None):
        """The output connection of `topic`; a copied topic keeps its source's definition, format and QoS."""
        if topic not in self._connections:
            from rosbags.rosbag2.metadata import parse_qos

            options = {"typestore": self._store}
            if source is not None:
                if source.definition_encoding:
                    # rosbags needs a hash argument; MCAP storage does not store it, sqlite3 does ('' when unknown).
                    options = {"msgdef": source.definition, "rihs01": source.type_hash or "-"}
                elif msgtype not in self._store.types:
                    raise UnknownTypeError(f"{topic}: the bag has no definition of {msgtype}")
                options["serialization_format"] = source.serialization_format or "cdr"
                with contextlib.suppress(Exception):  # QoS is kept where rosbags can parse it, dropped otherwise
                    options["offered_qos_profiles"] = parse_qos(source.offered_qos_profiles)
            self._connections[topic] = self._writer.add_connection(topic, msgtype, **options)
            self.counts[topic] = 0
        return self._connections[topic]

    def write(self, topic: str, time_ns: int, msg) -> None:
        """Serialise and write `msg` on `topic` at receive time `time_ns`."""
        self.write_raw(topic, msg.__msgtype__, time_ns, self._store.serialize_cdr(msg, msg.__msgtype__))

    def write_raw(self, topic: str, msgtype: str, time_ns: int, data: bytes | memoryview,
                  source: TopicInfo | None = None) -> None:
        """Write already-serialised bytes (copying a topic from another bag, with its TopicInfo as `source`).

        Raises UnknownTypeError for a type that neither the bag defines nor the type store knows.
        """
        self._writer.write(self.connection(topic, msgtype, source), int(time_ns), data)
        self.counts[topic] += 1


class UnknownTypeError(BagError):
    """A topic whose type cannot be written: no definition in its bag and not a type the store knows."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    time_ns: int
    raw: bytes | memoryview


class BagReader:
    """Reads a rosbag2 (directory, .db3 or .mcap; any storage version, split, compressed) or a ROS 1 .bag.

    Messages come raw, in receive-time order, CDR-encoded (a ROS 1 bag is converted, see bag_storage).
    """

    def __init__(self, path: str | Path, store: str = DEFAULT_STORE):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag")
        self._store = typestore(store)
        try:
            self._storage = open_storage(self.path)
        except StorageError as exc:
            raise BagError(f"{self.path}: {exc}") from None
        self.is_ros1 = isinstance(self._storage, Ros1Storage)

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._storage.close()

    @property
    def topic_info(self) -> dict[str, TopicInfo]:
        """topic -> type, serialization format, the bag's definition and the recorded QoS."""
        return self._storage.topics

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type."""
        return {name: info.msgtype for name, info in self.topic_info.items()}

    @functools.cached_property
    def _time_range(self) -> tuple[int, int]:
        found = self._storage.time_range()
        if found is None:  # an MCAP file without statistics: read the receive times
            times = [m.time_ns for m in self.messages()]
            found = (min(times), max(times)) if times else (0, 0)
        return found

    @property
    def start_ns(self) -> int:
        """Receive time of the first message (0 for an empty bag)."""
        return self._time_range[0]

    @property
    def end_ns(self) -> int:
        return self._time_range[1]

    @property
    def message_count(self) -> int | None:
        """Messages in the files (None where a file does not say without reading it through)."""
        return self._storage.message_count

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages in receive-time order, raw; a truncated or corrupt file raises BagError naming the bag."""
        wanted = set(topics) if topics is not None else None
        types = self.topics
        limit = BAG_MESSAGE_BYTES.value()
        try:
            for message in self._storage.messages(wanted):
                if len(message.data) > limit:
                    BAG_MESSAGE_BYTES.check(len(message.data), f"{self.path}: {types.get(message.topic)} on "
                                                               f"{message.topic} at {message.time_ns} ns")
                yield BagMessage(message.topic, types.get(message.topic, ""), message.time_ns, message.data)
        except InputTooLargeError as exc:
            raise BagError(str(exc)) from None
        except StorageError as exc:
            raise BagError(f"{self.path}: {exc}") from None

    def can_decode(self, msgtype: str) -> bool:
        return msgtype in self._store.types

    def decode(self, message: BagMessage):
        try:
            return self._store.deserialize_cdr(message.raw, message.msgtype)
        except Exception as exc:  # a message whose bytes do not match its type
            raise BagError(f"{self.path}: cannot decode a {message.msgtype} on {message.topic} at "
                           f"{message.time_ns} ns ({type(exc).__name__}: {exc})") from None
