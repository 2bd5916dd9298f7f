"""BDD100K label files -> frame records, for both formats as released.

- det_20 (Scalabel): `labels/det_20/det_{train,val}.json`, a list of frames (or a Scalabel dataset dict with
  `frames`), 13 categories, `trafficLightColor` NA/G/Y/R, ids as strings or ints.
- 2018: `labels/bdd100k_labels_images_{train,val}.json`, 10 categories (bike, motor, person ...), light colours
  none/green/red/yellow, plus `drivable area` / `lane` poly2d labels that carry no box and are skipped.
- Tagging files (name + attributes only) load as frames without boxes.

Records keep only what captions and evaluation need, normalised to det_20 names. Unknown categories and attribute
values are kept as they are and counted in a `LoadReport`; a structurally broken file raises `LabelFormatError`
naming the file and the frame. scalabel's own loader needs pydantic<2, which clashes with the rest of the stack;
msgspec decodes the file straight into typed structs (skipping fields captions do not use), with the garbage
collector paused while millions of small objects are created: the 70k-frame train split parses in a few seconds.
Label files are untrusted: a file over BLIP_MAX_LABEL_FILE_BYTES (default 4 GiB, see datasets.records)
is refused before it is read, and nesting too deep to decode is a `LabelFormatError`, never a crash.
"""

from __future__ import annotations

import contextlib
import gc
import re
from pathlib import Path

import msgspec

from blip_caption_ros.input_limits import InputTooLargeError
from blip_train.datasets.records import (
    ATTRIBUTE_VALUES,
    DET20_CATEGORIES,
    LABEL_FILE_BYTES,
    UNDEFINED,
    Box,
    FrameRecord,
    LabelFormatError,
    LoadReport,
)

#: 2018 names -> det_20 names (the others are spelled the same in both).
CATEGORY_ALIASES = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle"}
#: Labels drawn as polygons (segmentation-style); they describe no object to count.
POLYGON_CATEGORIES = frozenset({"drivable area", "lane", "area/drivable", "area/alternative", "area/unknown"})

#: Both spellings of traffic-light colour -> one. None means no colour (not a light, or not visible).
LIGHT_COLORS = {
    "G": "green", "Y": "yellow", "R": "red", "NA": None,
    "green": "green", "yellow": "yellow", "red": "red", "none": None,
}


class _Box2d(msgspec.Struct, gc=False):
    x1: float
    y1: float
    x2: float
    y2: float


class _LabelAttributes(msgspec.Struct, gc=False):
    occluded: bool = False
    truncated: bool = False
    trafficLightColor: str | None = None


class _Label(msgspec.Struct, gc=False):
    category: str
    attributes: _LabelAttributes | None = None
    box2d: _Box2d | None = None
    poly2d: list | None = None


class _FrameAttributes(msgspec.Struct, gc=False):
    weather: str | None = None
    scene: str | None = None
    timeofday: str | None = None


class _Frame(msgspec.Struct, gc=False):
    name: str
    attributes: _FrameAttributes | None = None
    labels: list[_Label] | None = None
    videoName: str | None = None
    timestamp: int | float | None = None


class _Dataset(msgspec.Struct, gc=False):
    frames: list[_Frame]


_DECODER = msgspec.json.Decoder(list[_Frame] | _Dataset)
_FRAME_INDEX = re.compile(r"\$(?:\.frames)?\[(\d+)\]")


@contextlib.contextmanager
def _gc_paused():
    """Creating millions of small objects triggers full collections that find nothing; pause them meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_bytes(path: Path) -> bytes:
    try:
        LABEL_FILE_BYTES.check(path.stat().st_size, f"{path}: label file")
        raw = path.read_bytes()
    except InputTooLargeError as exc:
        raise LabelFormatError(str(exc)) from None
    except FileNotFoundError:
        raise LabelFormatError(f"{path}: label file not found") from None
    except IsADirectoryError:
        raise LabelFormatError(f"{path}: is a directory, not a label file") from None
    except OSError as exc:
        raise LabelFormatError(f"{path}: cannot read label file: {exc.strerror or exc}") from None
    if not raw.strip():
        raise LabelFormatError(f"{path}: label file is empty")
    return raw


def load_frames(path: str | Path) -> tuple[list[FrameRecord], LoadReport]:
    """Load a det_20, 2018 or tagging label file into frame records plus a report of what was odd."""
    path = Path(path)
    return parse_frames(_read_bytes(path), source=str(path))


def parse_frames(data: bytes | str | list | dict, source: str = "<labels>") -> tuple[list[FrameRecord], LoadReport]:
    """Parse label JSON (bytes/str, or already-decoded lists and dicts) into records and a report."""
    if not isinstance(data, (bytes, str)):
        data = msgspec.json.encode(data)
    with _gc_paused():
        try:
            decoded = _DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise _validation_error(data, source, exc) from None
        except msgspec.DecodeError as exc:
            raise LabelFormatError(f"{source}: not valid JSON: {exc}") from None
        except RecursionError:
            raise LabelFormatError(f"{source}: JSON nested too deeply to be a label file") from None
        frames = decoded.frames if isinstance(decoded, _Dataset) else decoded
        report = LoadReport(source=source)
        records = [_to_record(frame, index, source, report) for index, frame in enumerate(frames)]
    report.frames = len(records)
    return records, report


def _validation_error(data: bytes | str, source: str, exc: msgspec.ValidationError) -> LabelFormatError:
    """Name the file, the frame (index and name) and the offending field of a schema error."""
    message = str(exc)
    match = _FRAME_INDEX.search(message)
    if match is None:
        if "Expected `array | object`" in message or message.startswith("Expected"):
            return LabelFormatError(f"{source}: expected a list of frames (or a dict with 'frames'): {message}")
        return LabelFormatError(f"{source}: {message}")
    index = int(match.group(1))
    name = None
    with contextlib.suppress(msgspec.MsgspecError, IndexError, KeyError, TypeError):
        loose = msgspec.json.decode(data)
        frame = (loose["frames"] if isinstance(loose, dict) else loose)[index]
        name = frame.get("name") if isinstance(frame, dict) else None
    where = f"frame {index}" + (f" ({name})" if isinstance(name, str) and name else "")
    return LabelFormatError(f"{source}: {where}: {message}")


_KNOWN_CATEGORIES = frozenset(DET20_CATEGORIES)
_NO_LABEL_ATTRIBUTES = _LabelAttributes()
_NO_FRAME_ATTRIBUTES = _FrameAttributes()


def _to_record(frame: _Frame, index: int, source: str, report: LoadReport) -> FrameRecord:
    if not frame.name:
        raise LabelFormatError(f"{source}: frame {index}: empty 'name'")
    attrs = frame.attributes or _NO_FRAME_ATTRIBUTES
    values = {}
    for key, known in ATTRIBUTE_VALUES.items():
        value = getattr(attrs, key) or UNDEFINED
        if value not in known:
            report.unknown_attribute_values[(key, value)] += 1
        values[key] = value
    boxes = []
    if frame.labels:
        for label in frame.labels:
            box = _to_box(label, report)
            if box is not None:
                boxes.append(box)
    report.boxes += len(boxes)
    return FrameRecord(
        name=frame.name,
        weather=values["weather"],
        scene=values["scene"],
        timeofday=values["timeofday"],
        boxes=tuple(boxes),
        has_object_labels=frame.labels is not None,
        video_name=frame.videoName,
        timestamp_ms=int(frame.timestamp) if frame.timestamp is not None else None,
    )


def _to_box(label: _Label, report: LoadReport) -> Box | None:
    category = label.category
    if category in POLYGON_CATEGORIES or category.startswith(("area/", "lane/")):
        report.polygons_skipped += 1
        return None
    category = CATEGORY_ALIASES.get(category, category)
    if category not in _KNOWN_CATEGORIES:
        report.unknown_categories[category] += 1
    box2d = label.box2d
    if box2d is None:
        if label.poly2d:
            report.polygons_skipped += 1
        else:
            report.labels_without_box += 1
        return None
    x1, x2 = (box2d.x1, box2d.x2) if box2d.x1 <= box2d.x2 else (box2d.x2, box2d.x1)
    y1, y2 = (box2d.y1, box2d.y2) if box2d.y1 <= box2d.y2 else (box2d.y2, box2d.y1)
    attributes = label.attributes or _NO_LABEL_ATTRIBUTES
    color = attributes.trafficLightColor
    if color is not None:
        color = _light_color(color, report)
    return Box(category, x1, y1, x2, y2, attributes.occluded, attributes.truncated, color)


def _light_color(raw: str, report: LoadReport) -> str | None:
    if raw in LIGHT_COLORS:
        return LIGHT_COLORS[raw]
    report.unknown_light_colors[raw] += 1
    return None


def image_path(root: str | Path, split: str, name: str) -> Path:
    """Where BDD100K keeps an image: `images/100k/{split}/{name}`."""
    return Path(root) / "images" / "100k" / split / name


def find_label_file(root: str | Path, split: str) -> Path:
    """The label file of a split under a BDD100K root: det_20 first, then the 2018 release."""
    root = Path(root)
    candidates = [
        root / "labels" / "det_20" / f"det_{split}.json",
        root / "labels" / f"bdd100k_labels_images_{split}.json",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    present = sorted({match.group(1) for path in [*root.glob("labels/det_20/det_*.json"),
                                                   *root.glob("labels/bdd100k_labels_images_*.json")]
                      if (match := re.search(r"(?:det|images)_(.+)\.json$", path.name))})
    here = f"; splits here: {', '.join(present)}" if present else ""
    raise LabelFormatError(f"{root}: no label file for split {split!r} (looked for {tried}){here}")
