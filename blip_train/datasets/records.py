"""What every dataset loader produces: frame records, the attribute vocabulary, load reports, and the input limits.

BDD100K (both label formats), Cityscapes and the synthetic frames all load into `FrameRecord`s named in det_20's
vocabulary, so the caption grammar, training and evaluation never ask where a frame came from. Dataset files are
untrusted and parsed in full, so each reader checks its file against one of the limits below before reading it
(`blip_caption_ros.input_limits.Limit`: set the named environment variable to raise one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from blip_caption_ros.input_limits import Limit

#: BDD100K label JSON (2018 train, the largest, is ~1.1 GB).
LABEL_FILE_BYTES = Limit("BLIP_MAX_LABEL_FILE_BYTES", 4 << 30)
#: One Cityscapes gtFine polygon JSON (real ones < 1 MB).
CITYSCAPES_FILE_BYTES = Limit("BLIP_MAX_CITYSCAPES_BYTES", 32 << 20)
#: One BDD100K GPS/IMU info JSON (real ones < 1 MB).
INFO_FILE_BYTES = Limit("BLIP_MAX_INFO_BYTES", 64 << 20)
#: A BDD-X annotation CSV (the release is ~4 MB) and one of its fields (a sentence is < 300 characters).
CSV_FILE_BYTES = Limit("BLIP_MAX_CSV_BYTES", 256 << 20)
CSV_FIELD_CHARS = Limit("BLIP_MAX_CSV_FIELD_CHARS", 4096, "characters")

IMAGE_WIDTH = 1280
IMAGE_HEIGHT = 720

DET20_CATEGORIES = (
    "pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    "traffic light", "traffic sign", "other vehicle", "other person", "trailer",
)
WEATHERS = ("rainy", "snowy", "clear", "overcast", "partly cloudy", "foggy", "undefined")
SCENES = ("tunnel", "residential", "parking lot", "city street", "gas stations", "highway", "undefined")
TIMES_OF_DAY = ("daytime", "night", "dawn/dusk", "undefined")
ATTRIBUTE_VALUES = {"weather": WEATHERS, "scene": SCENES, "timeofday": TIMES_OF_DAY}
UNDEFINED = "undefined"


class LabelFormatError(ValueError):
    """A label file that cannot be read as BDD100K labels; the message names the file and the frame."""


class Box(NamedTuple):
    """One box label in pixels. A NamedTuple: the train split has 1.3M of them."""

    category: str
    x1: float
    y1: float
    x2: float
    y2: float
    occluded: bool
    truncated: bool
    light_color: str | None


@dataclass(frozen=True)
class FrameRecord:
    """One labelled image: frame attributes (normalised, `undefined` when absent) and its boxes."""

    name: str
    weather: str = UNDEFINED
    scene: str = UNDEFINED
    timeofday: str = UNDEFINED
    boxes: tuple[Box, ...] = ()
    #: False for frames without a `labels` list (tagging files, unlabelled frames): nothing is known of objects.
    has_object_labels: bool = True
    video_name: str | None = None
    timestamp_ms: int | None = None
    image_width: int = IMAGE_WIDTH
    image_height: int = IMAGE_HEIGHT

    @property
    def attributes(self) -> dict[str, str]:
        return {"weather": self.weather, "scene": self.scene, "timeofday": self.timeofday}


@dataclass
class LoadReport:
    """What a load kept, skipped and did not recognise; unknowns are reported, never fatal."""

    source: str
    frames: int = 0
    boxes: int = 0
    polygons_skipped: int = 0
    labels_without_box: int = 0
    unknown_categories: Counter = field(default_factory=Counter)
    unknown_attribute_values: Counter = field(default_factory=Counter)
    unknown_light_colors: Counter = field(default_factory=Counter)

    def warnings(self) -> list[str]:
        lines = []
        if self.unknown_categories:
            lines.append(f"{self.source}: unknown categories kept as-is: {_fmt_counter(self.unknown_categories)}")
        if self.unknown_attribute_values:
            pairs = Counter({f"{k}={v}": n for (k, v), n in self.unknown_attribute_values.items()})
            lines.append(f"{self.source}: unknown attribute values kept as-is: {_fmt_counter(pairs)}")
        if self.unknown_light_colors:
            lines.append(f"{self.source}: unknown trafficLightColor values treated as no colour: "
                         f"{_fmt_counter(self.unknown_light_colors)}")
        if self.labels_without_box:
            lines.append(f"{self.source}: {self.labels_without_box} non-polygon labels had no box2d and were skipped")
        return lines

    def summary(self) -> str:
        return (f"{self.source}: {self.frames} frames, {self.boxes} boxes, "
                f"{self.polygons_skipped} polygon labels skipped")


def _fmt_counter(counter: Counter, limit: int = 10) -> str:
    items = [f"{key!s} ({count})" for key, count in counter.most_common(limit)]
    if len(counter) > limit:
        items.append(f"... {len(counter) - limit} more")
    return ", ".join(items)
