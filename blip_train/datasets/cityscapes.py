"""Cityscapes gtFine polygons -> frame records, so the caption grammar and training run on Cityscapes too.

Layout as released: `gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_polygons.json` (imgHeight, imgWidth,
objects[label, polygon]) beside `leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png` (2048x1024).

Objects become boxes (the polygon's extent) under BDD100K's det_20 names: person -> pedestrian, caravan ->
other vehicle, and `*group` labels (a crowd of cars or people drawn as one polygon) count as one object of their
class. Stuff classes (road, building, sky, vegetation, ego vehicle...) describe no object and are skipped.

Cityscapes labels no weather and no time of day (all of it was recorded in daytime, in fair weather, in German
city streets, but per-frame labels do not exist): records carry scene "city street" and `undefined` weather and
time, so captions state no weather or time (the grammar leaves undefined out) and evaluation scores neither.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec

from blip_caption_ros.input_limits import InputTooLargeError
from blip_train.datasets.records import CITYSCAPES_FILE_BYTES, UNDEFINED, Box, FrameRecord, LabelFormatError, LoadReport

LABEL_TO_CATEGORY = {
    "person": "pedestrian", "rider": "rider", "car": "car", "truck": "truck", "bus": "bus", "train": "train",
    "motorcycle": "motorcycle", "bicycle": "bicycle", "traffic light": "traffic light",
    "traffic sign": "traffic sign", "caravan": "other vehicle", "trailer": "trailer",
}
STUFF_LABELS = frozenset({
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground", "road",
    "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel", "pole",
    "polegroup", "vegetation", "terrain", "sky", "license plate",
})
SCENE = "city street"
POLYGON_SUFFIX = "_gtFine_polygons.json"
IMAGE_SUFFIX = "_leftImg8bit.png"


def polygon_files(root: str | Path, split: str) -> list[Path]:
    """Every gtFine polygon file of a split, in city then name order."""
    folder = Path(root) / "gtFine" / split
    if not folder.is_dir():
        raise LabelFormatError(f"{folder}: no Cityscapes gtFine folder for split {split!r}")
    return sorted(folder.glob(f"*/*{POLYGON_SUFFIX}"))


def image_name(polygon_file: Path) -> str:
    """`city/city_seq_frame_leftImg8bit.png`, the record name (relative to leftImg8bit/{split})."""
    return f"{polygon_file.parent.name}/{polygon_file.name.removesuffix(POLYGON_SUFFIX)}{IMAGE_SUFFIX}"


def image_path(root: str | Path, split: str, name: str) -> Path:
    return Path(root) / "leftImg8bit" / split / name


class _Object(msgspec.Struct, gc=False):
    label: object = None
    polygon: msgspec.Raw = msgspec.Raw(b"[]")  # decoded only for object classes: stuff polygons are most vertices
    deleted: object = None


class _PolygonFile(msgspec.Struct, gc=False):
    imgWidth: int | float | str
    imgHeight: int | float | str
    objects: list[_Object]


_FILE_DECODER = msgspec.json.Decoder(_PolygonFile)
_POLYGON_DECODER = msgspec.json.Decoder(list[tuple[float, float]], strict=False)


def parse_polygon_file(path: Path, report: LoadReport) -> FrameRecord:
    try:
        CITYSCAPES_FILE_BYTES.check(path.stat().st_size, f"{path}: Cityscapes label file")
        data = _FILE_DECODER.decode(path.read_bytes())
        width, height = int(data.imgWidth), int(data.imgHeight)
    except InputTooLargeError as exc:
        raise LabelFormatError(str(exc)) from None
    except (OSError, ValueError, msgspec.MsgspecError, RecursionError) as exc:
        raise LabelFormatError(f"{path}: not a Cityscapes polygon file ({type(exc).__name__}: {exc})") from None
    boxes = []
    for index, obj in enumerate(data.objects):
        label = obj.label
        if not isinstance(label, str):
            raise LabelFormatError(f"{path}: object {index} has no label")
        if obj.deleted:
            continue
        category = LABEL_TO_CATEGORY.get(label.removesuffix("group"))
        if category is None:
            if label not in STUFF_LABELS:
                report.unknown_categories[label] += 1
            continue
        try:
            points = _POLYGON_DECODER.decode(obj.polygon)
        except (msgspec.MsgspecError, RecursionError):
            raise LabelFormatError(f"{path}: object {index} ({label}) has a malformed polygon") from None
        if not points:
            report.labels_without_box += 1
            continue
        xs, ys = zip(*points, strict=True)
        min_x, max_x, min_y, max_y = min(xs), max(xs), min(ys), max(ys)
        x1, x2 = max(min_x, 0.0), min(max_x, width - 1.0)
        y1, y2 = max(min_y, 0.0), min(max_y, height - 1.0)
        truncated = min_x <= 0 or min_y <= 0 or max_x >= width - 1 or max_y >= height - 1
        boxes.append(Box(category, x1, y1, x2, y2, False, truncated, None))
    report.boxes += len(boxes)
    return FrameRecord(name=image_name(path), weather=UNDEFINED, scene=SCENE, timeofday=UNDEFINED,
                       boxes=tuple(boxes), image_width=width, image_height=height)


def load_cityscapes(root: str | Path, split: str) -> tuple[list[FrameRecord], LoadReport]:
    """All frames of a Cityscapes split as records; unknown labels are counted in the report."""
    files = polygon_files(root, split)
    report = LoadReport(source=str(Path(root) / "gtFine" / split), unknown_categories=Counter())
    frames = [parse_polygon_file(path, report) for path in files]
    report.frames = len(frames)
    return frames, report
