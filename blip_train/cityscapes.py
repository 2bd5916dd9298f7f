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

import json
from collections import Counter
from pathlib import Path

from blip_train.bdd100k import UNDEFINED, Box, FrameRecord, LabelFormatError, LoadReport

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
MAX_FILE_BYTES = 32 * 1024 * 1024


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


def parse_polygon_file(path: Path, report: LoadReport) -> FrameRecord:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise LabelFormatError(f"{path}: {path.stat().st_size} bytes is too large for a Cityscapes label file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        width, height = int(data["imgWidth"]), int(data["imgHeight"])
        objects = data["objects"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabelFormatError(f"{path}: not a Cityscapes polygon file ({type(exc).__name__}: {exc})") from None
    if not isinstance(objects, list):
        raise LabelFormatError(f"{path}: 'objects' is not a list")
    boxes = []
    for index, obj in enumerate(objects):
        label = obj.get("label") if isinstance(obj, dict) else None
        if not isinstance(label, str):
            raise LabelFormatError(f"{path}: object {index} has no label")
        if obj.get("deleted"):
            continue
        base = label.removesuffix("group")
        category = LABEL_TO_CATEGORY.get(base)
        if category is None:
            if label not in STUFF_LABELS:
                report.unknown_categories[label] += 1
            continue
        try:
            xs = [float(point[0]) for point in obj["polygon"]]
            ys = [float(point[1]) for point in obj["polygon"]]
        except (KeyError, TypeError, ValueError, IndexError):
            raise LabelFormatError(f"{path}: object {index} ({label}) has a malformed polygon") from None
        if not xs:
            report.labels_without_box += 1
            continue
        x1, x2 = max(min(xs), 0.0), min(max(xs), width - 1.0)
        y1, y2 = max(min(ys), 0.0), min(max(ys), height - 1.0)
        truncated = min(xs) <= 0 or min(ys) <= 0 or max(xs) >= width - 1 or max(ys) >= height - 1
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
