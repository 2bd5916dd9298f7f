"""The storages a recorded bag comes in, read as raw messages with their topic's type, definition and QoS.

rosbag2 on Humble, Jazzy and Kilted writes sqlite3 files (schema with and without `message_definitions`, the
type hash column of metadata version 9) and MCAP files (with ros2msg or ros2idl schemas, the QoS and type hash in
channel metadata), split into several files, optionally zstd-compressed per file or per message, and may record
service events (`pkg/srv/X_Event`). rosbags' rosbag2 reader reads none of the messages of 9 of the 21 bags in
rosbag2's own test resources (e.g. its talker MCAP: 0 of 20) and refuses bags with service events, so this module
reads the storages themselves: sqlite3 with the standard library, MCAP with the `mcap` library, metadata.yaml
only for the file list, compression and QoS. ROS 1 bags are read by rosbags and converted to CDR with the bag's own
definitions (as `rosbags-convert` does). Nothing here decodes a message: the tools decode only the types they use.
"""

from __future__ import annotations

import heapq
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

STORAGE_SUFFIXES = {".db3": "sqlite3", ".mcap": "mcap"}
DEFINITION_ENCODINGS = ("ros2msg", "ros2idl")


class StorageError(RuntimeError):
    """A file that is not a bag, or one that is damaged; the caller adds the bag's name."""


@dataclass(frozen=True)
class TopicInfo:
    """One recorded topic, as the bag describes it."""

    name: str
    msgtype: str
    """pkg/msg/Type (or pkg/srv/Type_Event); ROS 1 and old rosbag2 names are normalised to this form."""
    serialization_format: str = "cdr"
    definition: str = ""
    """The bag's own message definition (empty for a type without fields, e.g. std_msgs/Empty)."""
    definition_encoding: str = ""
    """'ros2msg' or 'ros2idl'; '' when the bag carries no definition (Humble's sqlite3 bags)."""
    type_hash: str = ""
    offered_qos_profiles: str = ""
    """rosbag2's YAML of the recording publishers' QoS ('' when unknown)."""


@dataclass(frozen=True)
class RawMessage:
    topic: str
    time_ns: int
    """Receive time (rosbag2's timestamp / MCAP log_time)."""
    data: bytes | memoryview


def normalize_type(msgtype: str) -> str:
    """'pkg/Type' (ROS 1, rosbag2 before Foxy) -> 'pkg/msg/Type'; others unchanged."""
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data))


def _qos_text(value) -> str:
    """offered_qos_profiles as the YAML text of metadata version <= 8 (version 9 stores a list)."""
    if not value:
        return ""
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=False)


class _Sqlite3File:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise StorageError(f"not a rosbag2 sqlite3 file ({exc})") from None
        if not {"topics", "messages"} <= tables:
            raise StorageError("not a rosbag2 sqlite3 file (no topics/messages tables)")
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(topics)")}
        qos = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
        hashes = "type_description_hash" if "type_description_hash" in columns else "''"
        definitions = {}
        if "message_definitions" in tables:
            for msgtype, encoding, text, type_hash in self.db.execute(
                    "SELECT topic_type, encoding, encoded_message_definition, type_description_hash "
                    "FROM message_definitions"):
                known = encoding in DEFINITION_ENCODINGS  # rosbag2 writes 'unknown' and '' when it had none
                definitions[normalize_type(msgtype)] = (text if known else "", encoding if known else "", type_hash)
        self.topics: dict[int, TopicInfo] = {}
        for topic_id, name, msgtype, fmt, qos_text, type_hash in self.db.execute(
                f"SELECT id, name, type, serialization_format, {qos}, {hashes} FROM topics"):
            msgtype = normalize_type(msgtype)
            text, encoding, defined_hash = definitions.get(msgtype, ("", "", ""))
            self.topics[topic_id] = TopicInfo(name, msgtype, fmt, text, encoding, type_hash or defined_hash,
                                              qos_text or "")

    def messages(self, wanted: set[str] | None) -> Iterator[tuple[int, str, bytes]]:
        ids = {i: t.name for i, t in self.topics.items() if wanted is None or t.name in wanted}
        if not ids:
            return
        query = (f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN "
                 f"({','.join(map(str, ids))}) ORDER BY timestamp, id")
        try:
            for topic_id, time_ns, data in self.db.execute(query):
                yield time_ns, ids[topic_id], data
        except sqlite3.Error as exc:
            raise StorageError(f"damaged sqlite3 file ({exc})") from None

    def message_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def time_range(self) -> tuple[int, int] | None:
        start, end = self.db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM messages").fetchone()
        return None if start is None else (start, end)

    def close(self) -> None:
        self.db.close()


class _McapFile:
    def __init__(self, path: Path):
        from mcap.reader import make_reader

        self.path = path
        self._file = path.open("rb")
        try:
            self.reader = make_reader(self._file)
            summary = self.reader.get_summary()
        except Exception as exc:  # noqa: BLE001 - mcap raises several record/format errors; all mean "unreadable"
            self._file.close()
            raise StorageError(f"not a readable MCAP file ({type(exc).__name__}: {exc})") from None
        self.topics: dict[int, TopicInfo] = {}
        self._statistics = summary.statistics if summary is not None else None
        if summary is not None:
            for channel in summary.channels.values():
                self.topics[channel.id] = self._topic(summary.schemas.get(channel.schema_id), channel)

    @staticmethod
    def _topic(schema, channel) -> TopicInfo:
        has_definition = schema is not None and schema.encoding in DEFINITION_ENCODINGS
        return TopicInfo(
            channel.topic, normalize_type(schema.name) if schema is not None else "",
            channel.message_encoding, schema.data.decode() if has_definition else "",
            schema.encoding if has_definition else "", channel.metadata.get("topic_type_hash", ""),
            channel.metadata.get("offered_qos_profiles", ""))

    def messages(self, wanted: set[str] | None) -> Iterator[tuple[int, str, bytes]]:
        try:
            for schema, channel, message in self.reader.iter_messages(log_time_order=True):
                if channel.id not in self.topics:  # a file without a summary section
                    self.topics[channel.id] = self._topic(schema, channel)
                if wanted is None or channel.topic in wanted:
                    yield message.log_time, channel.topic, message.data
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - see __init__
            raise StorageError(f"MCAP file is truncated or corrupt ({type(exc).__name__}: {exc})") from None

    def message_count(self) -> int | None:
        return self._statistics.message_count if self._statistics is not None else None

    def time_range(self) -> tuple[int, int] | None:
        if self._statistics is None or not self._statistics.message_count:
            return None
        return self._statistics.message_start_time, self._statistics.message_end_time

    def close(self) -> None:
        self._file.close()


class Rosbag2Storage:
    """A rosbag2 bag (a directory with metadata.yaml, a directory of files, or one .db3/.mcap file)."""

    def __init__(self, path: Path):
        self.path = path
        metadata = {}
        if path.is_dir() and (path / "metadata.yaml").is_file():
            try:
                metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
            except (yaml.YAMLError, TypeError, KeyError) as exc:
                raise StorageError(f"metadata.yaml is not rosbag2 metadata ({exc})") from None
        if metadata.get("relative_file_paths"):
            files = [path / name for name in metadata["relative_file_paths"]]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if storage_of(p))
        else:
            files = [path]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise StorageError(f"metadata.yaml lists files that are missing: {', '.join(missing)}")
        if not files:
            raise StorageError("no .db3 or .mcap files and no metadata.yaml")
        self.compression_mode = (metadata.get("compression_mode") or "").upper()
        if metadata.get("compression_format") not in (None, "", "zstd"):
            raise StorageError(f"compression {metadata['compression_format']!r} is not supported (zstd is)")
        self._tmp = tempfile.TemporaryDirectory(prefix="bag-") if any(f.suffix == ".zstd" for f in files) else None
        self.files = []
        try:
            for file in files:
                if file.suffix == ".zstd":  # compression_mode FILE
                    plain = Path(self._tmp.name) / file.stem
                    plain.write_bytes(_zstd_decompress(file.read_bytes()))
                    file = plain
                storage = storage_of(file)
                if storage is None:
                    raise StorageError(f"{file.name} is neither a sqlite3 nor an MCAP file")
                self.files.append(_Sqlite3File(file) if storage == "sqlite3" else _McapFile(file))
        except BaseException:
            self.close()
            raise
        self.metadata_topics = {}
        for entry in metadata.get("topics_with_message_count") or []:
            topic = entry.get("topic_metadata", {})
            if topic.get("name"):
                self.metadata_topics[topic["name"]] = TopicInfo(
                    topic["name"], normalize_type(topic.get("type", "")), topic.get("serialization_format", "cdr"),
                    type_hash=topic.get("type_description_hash", ""),
                    offered_qos_profiles=_qos_text(topic.get("offered_qos_profiles")))

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Every topic the files or the metadata name; a file's own description wins, metadata fills gaps."""
        found = dict(self.metadata_topics)
        for file in self.files:
            for info in file.topics.values():
                known = found.get(info.name)
                if known is not None:
                    info = TopicInfo(info.name, info.msgtype or known.msgtype, info.serialization_format,
                                     info.definition, info.definition_encoding, info.type_hash or known.type_hash,
                                     info.offered_qos_profiles or known.offered_qos_profiles)
                found[info.name] = info
        return found

    @property
    def message_count(self) -> int | None:
        counts = [file.message_count() for file in self.files]
        return None if None in counts else sum(counts)

    def time_range(self) -> tuple[int, int] | None:
        """First and last receive time of the messages in the files (not metadata.yaml's starting_time)."""
        ranges = [r for r in (file.time_range() for file in self.files) if r is not None]
        if not ranges:
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def messages(self, wanted: set[str] | None = None) -> Iterator[RawMessage]:
        """Messages of every file merged in receive-time order (split files may overlap in time)."""
        streams = [file.messages(wanted) for file in self.files]
        per_message = self.compression_mode == "MESSAGE"
        for time_ns, topic, data in heapq.merge(*streams, key=lambda m: m[0]):
            yield RawMessage(topic, time_ns, _zstd_decompress(data) if per_message else data)

    def close(self) -> None:
        for file in getattr(self, "files", []):
            file.close()
        if self._tmp is not None:
            self._tmp.cleanup()


class Ros1Storage:
    """A ROS 1 .bag, converted message by message to CDR with the bag's own definitions (as rosbags-convert does)."""

    def __init__(self, path: Path):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        self.path = path
        try:
            self._reader = AnyReader([path])
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags' reader errors all mean "unreadable"
            raise StorageError(f"not a readable ROS 1 bag ({type(exc).__name__}: {exc})") from None
        # The ROS 2 wire form of every type in the bag: its own definitions, with ROS 2's Header (no seq).
        self.typestore = get_typestore(Stores.EMPTY)
        self.typestore.register({**self._reader.typestore.fielddefs,
                                 "std_msgs/msg/Header": get_typestore(Stores.ROS2_HUMBLE).fielddefs[
                                     "std_msgs/msg/Header"]})
        self._topics = {}
        for connection in self._reader.connections:
            definition, _ = self.typestore.generate_msgdef(connection.msgtype, ros_version=2)
            self._topics[connection.topic] = TopicInfo(connection.topic, connection.msgtype, "cdr", definition,
                                                       "ros2msg", self.typestore.hash_rihs01(connection.msgtype))

    @property
    def topics(self) -> dict[str, TopicInfo]:
        return dict(self._topics)

    @property
    def message_count(self) -> int:
        return self._reader.message_count

    def time_range(self) -> tuple[int, int] | None:
        # rosbags gives the time just after the last message
        return (self._reader.start_time, self._reader.end_time - 1) if self._reader.message_count else None

    def messages(self, wanted: set[str] | None = None) -> Iterator[RawMessage]:
        connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        try:
            for connection, time_ns, raw in self._reader.messages(connections=connections):
                yield RawMessage(connection.topic, time_ns,
                                 self.typestore.ros1_to_cdr(raw, connection.msgtype))
        except Exception as exc:  # noqa: BLE001 - a damaged chunk or a message that does not match its definition
            raise StorageError(f"ROS 1 bag is truncated or corrupt ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        self._reader.close()


def storage_of(path: Path) -> str | None:
    """'sqlite3', 'mcap' or 'ros1' by the file's first bytes (a name may lie); None for anything else."""
    if path.suffix == ".zstd":
        return storage_of(path.with_suffix("")) if path.with_suffix("").suffix in STORAGE_SUFFIXES else None
    if not path.is_file():
        return None
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3"):
        return "sqlite3"
    if head.startswith(b"\x89MCAP"):
        return "mcap"
    if head.startswith(b"#ROSBAG V2.0"):
        return "ros1"
    return None


def open_storage(path: Path) -> Rosbag2Storage | Ros1Storage:
    if path.is_file() and storage_of(path) == "ros1":
        return Ros1Storage(path)
    if path.is_file() and storage_of(path) is None:
        raise StorageError("neither a rosbag2 (.db3, .mcap) nor a ROS 1 bag")
    return Rosbag2Storage(path)
