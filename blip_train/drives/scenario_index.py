"""`caption-index`: read captioned drives (from caption-bag or caption-bags) into one DuckDB table to search.

One row per caption: the drive (the captioned bag's name), camera, stamp, time since the drive's start and its share
of the drive, the caption text, the facts the caption states (weather, time of day, scene, object classes with
left/ahead/right and near/far, traffic-light colours), read by `blip_train.attributes`, the same checker that
scores evaluation, and the sensor figures the caption JSON carries (LiDAR nearest range overall and in the camera's
forward sector, radar nearest range and closing speed).

DuckDB is embedded (a file, no server) and columnar, so a filter over millions of rows takes milliseconds; only its
built-in extensions are used (json), with extension auto-install switched off so nothing is fetched at run time. The
database is appendable: indexing a drive again replaces that drive's rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from blip_caption_ros import bag_io
from blip_caption_ros.progress import progress_bar
from blip_train.attributes import ATTRIBUTE_KEYS, detect_attribute, object_mentions

TABLE = "captions"
#: Column name -> DuckDB type. `object_tags` holds, per mentioned class C: C, C:REGION for each region, C:near or
#: C:far, and C:REGION:near / C:REGION:far, so `--object pedestrian:left:near` is one list lookup. A caption states
#: near/far per class, not per region ("two pedestrians, one on the left and one ahead, one of them close by"), so
#: C:REGION:near means "C on the left, and some C close by".
COLUMNS: dict[str, str] = {
    "drive": "VARCHAR",
    "bag": "VARCHAR",
    "camera": "VARCHAR",
    "stamp_ns": "BIGINT",
    "t_s": "DOUBLE",
    "drive_duration_s": "DOUBLE",
    "drive_fraction": "DOUBLE",
    "frame_index": "INTEGER",
    "caption": "VARCHAR",
    "weather": "VARCHAR",
    "timeofday": "VARCHAR",
    "scene": "VARCHAR",
    "objects": "VARCHAR[]",
    "object_tags": "VARCHAR[]",
    "light_colours": "VARCHAR[]",
    "lidar_nearest_m": "DOUBLE",
    "lidar_ahead_m": "DOUBLE",
    "radar_nearest_m": "DOUBLE",
    "radar_closing_mps": "DOUBLE",
    "backend": "VARCHAR",
    "model": "VARCHAR",
}


class ScenarioIndexError(RuntimeError):
    """A captioned output that cannot be indexed, or a database that cannot be opened, naming it."""


def connect(db: str | Path, read_only: bool = False):
    """Open (creating when needed) the index database, offline: no extension is installed or loaded on demand."""
    import duckdb

    try:
        connection = duckdb.connect(str(db), read_only=read_only, config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False})
    except duckdb.Error as exc:
        raise ScenarioIndexError(f"{db}: cannot open the scenario index ({exc})") from None
    if not read_only:
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns})")
    return connection


def object_tags(caption: str) -> tuple[list[str], list[str], list[str]]:
    """(classes, tags, traffic-light colours) a caption states; see COLUMNS for the tags."""
    mentions = object_mentions(caption)
    tags = []
    for category, mention in mentions.items():
        distances = [d for d, on in (("near", mention.near), ("far", mention.far)) if on]
        tags.append(category)
        tags += [f"{category}:{region}" for region in sorted(mention.regions)]
        tags += [f"{category}:{distance}" for distance in distances]
        tags += [f"{category}:{region}:{distance}" for region in sorted(mention.regions) for distance in distances]
    colours = sorted(mentions["traffic light"].colours) if "traffic light" in mentions else []
    return sorted(mentions), tags, colours


def caption_row(record: dict, *, drive: str, bag: str, start_ns: int, duration_s: float, frame_index: int) -> dict:
    """One table row from one caption JSON record (DESIGN.md, "Node contract")."""
    stamp_ns = int(record["stamp"]["sec"]) * 1_000_000_000 + int(record["stamp"]["nanosec"])
    caption = record["caption"]
    lidar, radar = record.get("lidar") or {}, record.get("radar") or {}
    classes, tags, colours = object_tags(caption)
    t_s = (stamp_ns - start_ns) / 1e9
    return {
        "drive": drive, "bag": bag, "camera": record["camera"], "stamp_ns": stamp_ns, "t_s": t_s,
        "drive_duration_s": duration_s, "drive_fraction": t_s / duration_s if duration_s > 0 else 0.0,
        "frame_index": frame_index, "caption": caption,
        **{key: detect_attribute(caption, key) for key in ATTRIBUTE_KEYS},
        "objects": classes, "object_tags": tags, "light_colours": colours,
        "lidar_nearest_m": lidar.get("nearest_m"), "lidar_ahead_m": (lidar.get("sector") or {}).get("nearest_m"),
        "radar_nearest_m": radar.get("nearest_m"), "radar_closing_mps": radar.get("closing_speed_mps"),
        "backend": record.get("backend"), "model": record.get("model"),
    }


def drive_name(bag: Path) -> str:
    return bag.stem if bag.is_file() else bag.name


def read_drive(bag: Path) -> list[dict]:
    """The rows of one captioned bag, in stamp order per camera."""
    with bag_io.BagReader(bag) as reader:
        topics = [t for t, kind in reader.topics.items() if t.endswith("/caption") and kind == "std_msgs/msg/String"]
        if not topics:
            raise ScenarioIndexError(f"{bag}: no caption topics (/<camera>/caption); caption it with caption-bag "
                                     "or caption-bags first")
        start_ns, duration_s = reader.start_ns, (reader.end_ns - reader.start_ns) / 1e9
        records = []
        for message in reader.messages(topics):
            try:
                records.append(json.loads(reader.decode(message).data))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ScenarioIndexError(f"{bag}: a caption on {message.topic} at {message.time_ns} ns is not "
                                         f"caption JSON ({exc})") from None
    rows, counters = [], {}
    name = drive_name(bag)
    try:
        records.sort(key=lambda r: (r["camera"], r["stamp"]["sec"], r["stamp"]["nanosec"]))
        for record in records:
            index = counters.get(record["camera"], 0)
            counters[record["camera"]] = index + 1
            rows.append(caption_row(record, drive=name, bag=str(bag.resolve()), start_ns=start_ns,
                                    duration_s=duration_s, frame_index=index))
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioIndexError(f"{bag}: caption JSON without the expected fields ({exc!r})") from None
    return rows


def insert_rows(connection, rows: Iterable[dict]) -> int:
    """Append rows (dicts with COLUMNS' keys) in one bulk load through DuckDB's JSON reader."""
    fd, path = tempfile.mkstemp(suffix=".jsonl", prefix="caption-index-")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row))
                f.write("\n")
                count += 1
        if count:
            columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items()) + "}"
            connection.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM read_json(?, "
                               f"format='newline_delimited', columns={columns})", [path])
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return count


def index_drives(connection, bags: Iterable[Path], progress: bool = False) -> Iterator[tuple[Path, int]]:
    """Index each bag, replacing the rows of a drive indexed before; yields (bag, rows)."""
    for bag in progress_bar(list(bags), desc="indexing", unit="drive", disable=not progress):
        rows = read_drive(bag)
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(f"DELETE FROM {TABLE} WHERE drive = ?", [drive_name(bag)])
            count = insert_rows(connection, rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        yield bag, count


def main(argv: list[str] | None = None) -> int:
    from blip_train.drives.fleet import FleetError, find_bags

    parser = argparse.ArgumentParser(prog="caption-index", description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", nargs="+", help="captioned bags, folders of them, or globs")
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file to create or append to")
    args = parser.parse_args(argv)
    try:
        bags = find_bags(args.outputs)
        connection = connect(args.db)
        total = 0
        for _, count in index_drives(connection, bags, progress=True):
            total += count
        drives, rows = connection.execute(f"SELECT count(DISTINCT drive), count(*) FROM {TABLE}").fetchone()
        connection.close()
    except (FleetError, ScenarioIndexError, bag_io.BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"indexed {len(bags)} drive(s), {total} captions; {args.db} now holds {drives} drive(s), {rows} captions",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
