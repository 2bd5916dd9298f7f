"""`caption-search`: find scenarios in a caption index, e.g. "night, rain, a pedestrian on the left, within 10 m".

    caption-search --db fleet.duckdb --weather rainy --timeofday night --object pedestrian:left --lidar-within 10

Filters combine with AND. Hits are caption rows; consecutive captions of one drive and camera that all match are
merged into one scenario interval, printed as a table (drive, camera, time in the drive, captions, first caption).
`--html OUT` writes a contact sheet: per interval a strip of thumbnails of its hits (up to `--thumbnails`, spread
over the interval), taken from the captioned bag's overlay image (or the camera image) at each caption's stamp, with
a Foxglove link to the bag at the interval's first caption and the package's Foxglove layout beside it.
`--where` adds raw SQL conditions on the `captions` table (see blip_train.drives.scenario_index.COLUMNS); `--sql` runs a
whole query and prints its rows.

Text search is a case-insensitive substring match: DuckDB's full-text extension is not built in and would be
downloaded at run time, and a columnar scan of a million captions takes tens of milliseconds anyway.
"""

from __future__ import annotations

import argparse
import base64
import html
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

from blip_caption_ros import bag_io
from blip_train.attributes import ATTRIBUTE_PATTERNS, LIGHT_COLOUR_PATTERNS, OBJECT_PATTERNS, REGION_PATTERNS
from blip_train.drives.scenario_index import COLUMNS, TABLE, ScenarioIndexError, connect

DISTANCES = ("near", "far")
FOXGLOVE_LAYOUT = Path(__file__).resolve().parents[2] / "config" / "foxglove_layout.json"


class SearchError(ValueError):
    """A filter that cannot be understood, naming the flag and the value."""


@dataclass(frozen=True)
class Interval:
    drive: str
    camera: str
    bag: str
    start_s: float
    end_s: float
    frames: int
    caption: str
    stamp_ns: int
    drive_duration_s: float
    hits: tuple[tuple[int, float, str], ...] = ()
    """(stamp_ns, time in drive, caption) of every caption in the interval, in order."""


def parse_object(spec: str) -> str:
    """`CLASS[:REGION][:near|far]` -> the object tag stored in the index (see scenario_index.COLUMNS)."""
    parts = [p.strip().lower() for p in spec.split(":")]
    category, rest = parts[0], parts[1:]
    if category not in OBJECT_PATTERNS:
        raise SearchError(f"--object {spec!r}: unknown class {category!r} (one of {', '.join(OBJECT_PATTERNS)})")
    region = rest.pop(0) if rest and rest[0] in REGION_PATTERNS else None
    distance = rest.pop(0) if rest and rest[0] in DISTANCES else None
    if rest:
        raise SearchError(f"--object {spec!r}: expected CLASS[:left|ahead|right][:near|far], "
                          f"not {':'.join(rest)!r}")
    return ":".join(p for p in (category, region, distance) if p)


def _choice(flag: str, value: str, allowed) -> str:
    if value not in allowed:
        raise SearchError(f"{flag} {value!r}: one of {', '.join(allowed)}")
    return value


def build_filter(args: argparse.Namespace) -> tuple[str, list]:
    """The WHERE clause and its parameters for the search flags."""
    conditions, params = [], []
    for key in ("weather", "timeofday", "scene"):
        value = getattr(args, key)
        if value is not None:
            conditions.append(f"{key} = ?")
            params.append(_choice(f"--{key}", value, list(ATTRIBUTE_PATTERNS[key])))
    for spec in args.object or []:
        conditions.append("list_contains(object_tags, ?)")
        params.append(parse_object(spec))
    for colour in args.light or []:
        conditions.append("list_contains(light_colours, ?)")
        params.append(_choice("--light", colour, list(LIGHT_COLOUR_PATTERNS)))
    if args.lidar_within is not None:
        conditions.append("lidar_ahead_m <= ?")
        params.append(args.lidar_within)
    if args.closing_faster is not None:
        conditions.append("radar_closing_mps > ?")
        params.append(args.closing_faster)
    for text in args.text or []:
        conditions.append("contains(lower(caption), ?)")
        params.append(text.lower())
    for name, column in (("drive", "drive"), ("camera", "camera")):
        if getattr(args, name):
            conditions.append(f"{column} = ?")
            params.append(getattr(args, name))
    for where in args.where or []:
        conditions.append(f"({where})")
    return (" AND ".join(conditions) or "TRUE"), params


def search(connection, where: str, params: list) -> list[Interval]:
    """Matching captions merged into intervals: consecutive frames of one drive and camera form one interval."""
    query = f"""
        WITH hits AS (
            SELECT drive, camera, bag, frame_index, t_s, stamp_ns, caption, drive_duration_s,
                   frame_index - row_number() OVER (PARTITION BY drive, camera ORDER BY frame_index) AS island
            FROM {TABLE} WHERE {where})
        SELECT drive, camera, any_value(bag), min(t_s), max(t_s), count(*), arg_min(caption, frame_index),
               arg_min(stamp_ns, frame_index), max(drive_duration_s),
               list(struct_pack(s := stamp_ns, t := t_s, c := caption) ORDER BY frame_index)
        FROM hits GROUP BY drive, camera, island ORDER BY drive, camera, min(t_s)"""
    import duckdb

    try:
        rows = connection.execute(query, params).fetchall()
    except duckdb.Error as exc:
        raise SearchError(f"the search failed: {exc}") from None
    return [Interval(*row[:-1], hits=tuple((h["s"], h["t"], h["c"]) for h in row[-1])) for row in rows]


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def format_table(intervals: list[Interval], width: int = 70) -> str:
    lines = [f"{'drive':<24} {'camera':<8} {'time in drive':<17} {'frames':>6}  caption"]
    for it in intervals:
        caption = it.caption if len(it.caption) <= width else it.caption[: width - 3] + "..."
        span = f"{_clock(it.start_s)}-{_clock(it.end_s)}"
        lines.append(f"{it.drive:<24} {it.camera:<8} {span:<17} {it.frames:>6}  {caption}")
    return "\n".join(lines)


# --- contact sheet --------------------------------------------------------------------------------------------------


def shown_hits(interval: Interval, most: int) -> list[tuple[int, float, str]]:
    """Up to `most` hits of an interval, evenly spread from its first to its last caption."""
    hits = list(interval.hits) or [(interval.stamp_ns, interval.start_s, interval.caption)]
    if len(hits) <= most:
        return hits
    step = (len(hits) - 1) / (most - 1) if most > 1 else 0
    return [hits[round(i * step)] for i in range(most)]


def thumbnails(intervals: list[Interval], width_px: int = 320, per_interval: int = 6
               ) -> dict[tuple[str, str, int], bytes]:
    """JPEG thumbnails keyed by (bag, camera, stamp) of the hits shown: the overlay image at that stamp, else the
    camera image."""
    import cv2

    from blip_caption_ros.caption_bag import decode_image

    wanted: dict[str, dict[str, set[int]]] = {}
    for it in intervals:
        stamps = wanted.setdefault(it.bag, {}).setdefault(it.camera, set())
        stamps.update(stamp for stamp, _, _ in shown_hits(it, per_interval))
    found: dict[tuple[str, str, int], bytes] = {}
    for bag, cameras in wanted.items():
        try:
            with bag_io.BagReader(bag) as reader:
                topics = reader.topics
                for camera, stamps in cameras.items():
                    for topic in (f"/{camera}/caption/image/compressed", f"/{camera}/image/compressed",
                                  f"/{camera}/image"):
                        missing = {s for s in stamps if (bag, camera, s) not in found}
                        if topic not in topics or not missing:
                            continue
                        for message in reader.messages([topic]):
                            msg = reader.decode(message)
                            stamp = bag_io.stamp_of(msg)
                            if stamp in missing:
                                rgb = decode_image(msg, message.msgtype)
                                scale = width_px / rgb.shape[1]
                                small = cv2.resize(rgb, (width_px, max(1, round(rgb.shape[0] * scale))),
                                                   interpolation=cv2.INTER_AREA)
                                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                                        [cv2.IMWRITE_JPEG_QUALITY, 80])
                                if ok:
                                    found[bag, camera, stamp] = jpeg.tobytes()
                                missing.discard(stamp)
                                if not missing:
                                    break
        except bag_io.BagError as exc:  # a moved or deleted bag: the sheet still lists its intervals
            print(f"warning: no thumbnails from {bag}: {exc}", file=sys.stderr)
    return found


def _mcap_file(bag: str) -> Path:
    path = Path(bag)
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        if files:
            return files[0]
    return path


def foxglove_link(bag: str, stamp_ns: int, url_prefix: str | None) -> tuple[str, str]:
    """(deep link, seek time): a Foxglove link opening the MCAP served under `url_prefix` at that moment, or the
    local file URL when the bag is not served over HTTP (open it in Foxglove and seek to the time shown)."""
    moment = datetime.fromtimestamp(stamp_ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")
    moment = moment.replace("+00:00", "Z")
    mcap = _mcap_file(bag)
    if url_prefix:
        query = urlencode({"ds": "remote-file", "ds.url": url_prefix.rstrip("/") + "/" + quote(
            f"{mcap.parent.name}/{mcap.name}"), "time": moment})
        return f"https://app.foxglove.dev/~/view?{query}", moment
    return mcap.as_uri(), moment


def write_contact_sheet(out: Path, intervals: list[Interval], description: str, url_prefix: str | None = None,
                        per_interval: int = 6) -> Path:
    """OUT/index.html with a strip of hit thumbnails per interval, and OUT/foxglove_layout.json (the package's
    caption layout)."""
    out.mkdir(parents=True, exist_ok=True)
    layout = None
    if FOXGLOVE_LAYOUT.is_file():
        layout = out / "foxglove_layout.json"
        shutil.copyfile(FOXGLOVE_LAYOUT, layout)
    images = thumbnails(intervals, per_interval=per_interval)
    cards = []
    for it in intervals:
        link, moment = foxglove_link(it.bag, it.stamp_ns, url_prefix)
        pictures = []
        for stamp, t_s, caption in shown_hits(it, per_interval):
            jpeg = images.get((it.bag, it.camera, stamp))
            title = html.escape(f"{_clock(t_s)}: {caption}")
            pictures.append(f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" title="{title}" '
                            f'alt="{title}">' if jpeg else f'<div class="missing" title="{title}">no image</div>')
        more = (f" (showing {len(pictures)} of {it.frames})" if len(pictures) < it.frames else "")
        cards.append(f"""<section><div class="strip">{"".join(pictures)}</div>
<p><b>{html.escape(it.drive)}</b> · {html.escape(it.camera)} · {_clock(it.start_s)}–{_clock(it.end_s)} of
{_clock(it.drive_duration_s)}, {it.frames} caption{'s' if it.frames != 1 else ''}{more}<br>
<q>{html.escape(it.caption)}</q><br>
<a href="{html.escape(link)}">open in Foxglove</a> at <code>{moment}</code> (stamp {it.stamp_ns} ns)</p>
</section>""")
    layout_note = (f'Foxglove layout: <a href="{layout.name}">{layout.name}</a> (Layouts → Import from file).'
                   if layout else "")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Scenario search</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
section {{ border: 1px solid #ccc; border-radius: 6px; padding: 8px; margin-bottom: 14px; background: #fafafa; }}
.strip {{ display: flex; gap: 6px; overflow-x: auto; }}
.strip img {{ width: 240px; border-radius: 4px; }}
.missing {{ width: 240px; height: 135px; background: #ddd; display: flex; align-items: center;
            justify-content: center; }}
section p {{ font-size: 13px; line-height: 1.45; margin: 6px 0 0; }}
</style></head><body>
<h1>Scenario search</h1>
<p>{html.escape(description)}: {len(intervals)} interval(s), {sum(i.frames for i in intervals)} caption(s).
{layout_note}</p>
{chr(10).join(cards)}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caption-search", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--db", type=Path, required=True, help="index written by caption-index")
    parser.add_argument("--weather", help=f"one of: {', '.join(ATTRIBUTE_PATTERNS['weather'])}")
    parser.add_argument("--timeofday", help=f"one of: {', '.join(ATTRIBUTE_PATTERNS['timeofday'])}")
    parser.add_argument("--scene", help=f"one of: {', '.join(ATTRIBUTE_PATTERNS['scene'])}")
    parser.add_argument("--object", action="append", metavar="CLASS[:REGION][:near|far]",
                        help="a mentioned object class, optionally where (left/ahead/right) and near/far; repeatable")
    parser.add_argument("--light", action="append", metavar="COLOUR", help="a traffic-light colour; repeatable")
    parser.add_argument("--lidar-within", type=float, metavar="M",
                        help="nearest LiDAR return in the camera's forward sector at most M metres away")
    parser.add_argument("--closing-faster", type=float, metavar="M/S",
                        help="a radar target approaching faster than this")
    parser.add_argument("--text", action="append", help="words the caption contains (case-insensitive); repeatable")
    parser.add_argument("--drive", help="only this drive")
    parser.add_argument("--camera", help="only this camera")
    parser.add_argument("--where", action="append", metavar="SQL",
                        help=f"an extra SQL condition on table {TABLE} (columns: {', '.join(COLUMNS)})")
    parser.add_argument("--sql", help="run this query instead of the filters and print its rows")
    parser.add_argument("--limit", type=int, default=50, help="intervals to print and show (default 50; 0: all)")
    parser.add_argument("--html", type=Path, metavar="OUT", help="write a contact sheet to OUT/index.html")
    parser.add_argument("--thumbnails", type=int, default=6,
                        help="thumbnails per interval on the contact sheet, spread over its hits (default 6)")
    parser.add_argument("--url-prefix", help="HTTP(S) URL under which the captioned bags' folder is served, for "
                        "Foxglove deep links (default: links to the local files)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.db.is_file():
        print(f"error: {args.db}: no such index (write it with caption-index)", file=sys.stderr)
        return 2
    try:
        connection = connect(args.db, read_only=True)
        if args.sql:
            import duckdb

            try:
                cursor = connection.execute(args.sql)
                names = [d[0] for d in cursor.description or []]
                rows = cursor.fetchall()
            except duckdb.Error as exc:
                raise SearchError(f"--sql: {exc}") from None
            print("\t".join(names))
            for row in rows[: args.limit or None]:
                print("\t".join("" if v is None else str(v) for v in row))
            print(f"{len(rows)} row(s)", file=sys.stderr)
            return 0
        where, params = build_filter(args)
        intervals = search(connection, where, params)
    except (SearchError, ScenarioIndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown = intervals[: args.limit] if args.limit else intervals
    print(format_table(shown))
    flags = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    print(f"{len(intervals)} interval(s), {sum(i.frames for i in intervals)} caption(s) match"
          f"{f'; showing {len(shown)}' if len(shown) < len(intervals) else ''}", file=sys.stderr)
    if args.html:
        index = write_contact_sheet(args.html, shown, f"caption-search {flags}", args.url_prefix,
                                    max(1, args.thumbnails))
        print(f"contact sheet: {index}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
