"""Synthetic BDD-style street scenes with det_20 labels, for tests and the offline demo.

Real BDD100K cannot be downloaded here, so the project draws its own: 1280x720 JPEG frames of a road seen from the
driver's seat, with time of day and weather visible in the pixels (sky colour and light, clouds, rain streaks and wet
road, snow cover, fog) and cars, pedestrians, traffic lights and signs drawn exactly where their box2d says. The
output uses BDD100K's layout and det_20 format, so everything downstream reads it like the real download:

    ROOT/images/100k/{split}/{name}.jpg
    ROOT/labels/det_20/det_{split}.json

Frames are balanced over weather x time of day (each combination equally often, in shuffled order). Backgrounds are
cached per (scene, time, weather) so a frame costs about 10 ms (drawing + JPEG encoding).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from blip_caption_ros.progress import progress_bar
from blip_train.datasets.records import DET20_CATEGORIES, Box, FrameRecord

WIDTH, HEIGHT = 1280, 720
HORIZON = int(HEIGHT * 0.45)
#: The attribute values the renderer can draw (a subset of bdd100k.WEATHERS etc., in the generator's order).
DRAWN_WEATHERS = ("clear", "overcast", "partly cloudy", "rainy", "snowy", "foggy")
DRAWN_TIMES_OF_DAY = ("daytime", "night", "dawn/dusk")
DRAWN_SCENES = ("city street", "highway", "residential")
LIGHT_COLORS = ("red", "yellow", "green")
_DET20_LIGHT = {"red": "R", "yellow": "Y", "green": "G", None: "NA"}

# Sky colours (BGR) at the top and at the horizon, per time of day; weather modifies them.
_SKY = {
    "daytime": ((235, 170, 90), (250, 225, 190)),
    "night": ((40, 15, 5), (70, 40, 25)),
    "dawn/dusk": ((150, 80, 70), (90, 150, 250)),
}
_LIGHT_LEVEL = {"daytime": 1.0, "night": 0.28, "dawn/dusk": 0.62}
_CAR_COLORS = ((40, 40, 200), (200, 200, 200), (30, 30, 30), (180, 90, 30), (40, 140, 40), (0, 200, 230))


@dataclass
class SceneObject:
    category: str
    box: tuple[float, float, float, float]
    light_color: str | None = None
    occluded: bool = False
    truncated: bool = False
    paint: tuple[int, int, int] | None = None  # BGR body colour; random per frame when None


@dataclass
class SceneSpec:
    name: str
    weather: str
    timeofday: str
    scene: str
    objects: list[SceneObject] = field(default_factory=list)

    def to_det20(self, frame_index: int = 0) -> dict:
        """The frame as a det_20 (Scalabel) record, keys and nesting as in the released files."""
        labels = []
        for i, obj in enumerate(self.objects):
            x1, y1, x2, y2 = obj.box
            labels.append({
                "id": str(i),
                "category": obj.category,
                "attributes": {"occluded": obj.occluded, "truncated": obj.truncated,
                               "trafficLightColor": _DET20_LIGHT[obj.light_color]},
                "manualShape": True,
                "box2d": {"x1": round(x1, 3), "y1": round(y1, 3), "x2": round(x2, 3), "y2": round(y2, 3)},
                "poly2d": None,
                "box3d": None,
            })
        return {
            "videoName": self.name.removesuffix(".jpg"),
            "name": self.name,
            "frameIndex": frame_index,
            "timestamp": 10000,
            "labels": labels,
            "attributes": {"weather": self.weather, "timeofday": self.timeofday, "scene": self.scene},
        }


def _scale_at(y_bottom: float) -> float:
    """Pixels per metre at a ground row: zero at the horizon, growing linearly towards the camera."""
    return max(y_bottom - HORIZON, 1) / 1.6


def _road_half_width(y: float) -> float:
    return 20 + (y - HORIZON) / (HEIGHT - HORIZON) * WIDTH * 0.55


def random_scene(rng: np.random.Generator, name: str, weather: str, timeofday: str, scene: str) -> SceneSpec:
    """Place objects on a plausible layout: vehicles on the road, people on the kerbs, lights and signs above."""
    spec = SceneSpec(name=name, weather=weather, timeofday=timeofday, scene=scene)
    n_cars = int(rng.integers(0, 5 if scene != "residential" else 3))
    n_people = 0 if scene == "highway" else int(rng.integers(0, 4))
    n_lights = int(rng.integers(0, 3)) if scene == "city street" else 0
    n_signs = int(rng.integers(0, 3))
    for _ in range(n_cars):
        y2 = float(rng.uniform(HORIZON + 12, HEIGHT + 30))
        s = _scale_at(y2)
        w, h = 1.9 * s, 1.5 * s
        cx = WIDTH / 2 + float(rng.uniform(-1.1, 1.1)) * _road_half_width(min(y2, HEIGHT))
        category = "car" if rng.random() < 0.8 else ("truck" if rng.random() < 0.6 else "bus")
        if category != "car":
            w, h = w * 1.2, h * 1.9
        spec.objects.append(SceneObject(category, (cx - w / 2, y2 - h, cx + w / 2, y2)))
    for _ in range(n_people):
        y2 = float(rng.uniform(HORIZON + 15, HEIGHT - 10))
        s = _scale_at(y2)
        side = -1 if rng.random() < 0.5 else 1
        cx = WIDTH / 2 + side * (_road_half_width(y2) + float(rng.uniform(5, 60)))
        w, h = 0.6 * s, 1.75 * s
        spec.objects.append(SceneObject("pedestrian", (cx - w / 2, y2 - h, cx + w / 2, y2)))
    for _ in range(n_lights):
        cx = float(rng.uniform(WIDTH * 0.2, WIDTH * 0.8))
        y1 = float(rng.uniform(HORIZON - 230, HORIZON - 90))
        w = float(rng.uniform(18, 34))
        spec.objects.append(SceneObject("traffic light", (cx - w / 2, y1, cx + w / 2, y1 + 2.6 * w),
                                        light_color=LIGHT_COLORS[int(rng.integers(0, 3))]))
    for _ in range(n_signs):
        side = -1 if rng.random() < 0.5 else 1
        cx = WIDTH / 2 + side * float(rng.uniform(WIDTH * 0.25, WIDTH * 0.45))
        size = float(rng.uniform(25, 70))
        y1 = float(rng.uniform(HORIZON - 120, HORIZON - 20))
        spec.objects.append(SceneObject("traffic sign", (cx - size / 2, y1, cx + size / 2, y1 + size)))
    # Far objects first, so nearer ones are drawn over them; then mark truncation and occlusion as a labeller would.
    spec.objects.sort(key=lambda o: o.box[3] if o.category in ("car", "truck", "bus", "pedestrian") else -1)
    for i, obj in enumerate(spec.objects):
        x1, y1, x2, y2 = obj.box
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, WIDTH - 1.0), min(y2, HEIGHT - 1.0))
        obj.truncated = clipped != (x1, y1, x2, y2)
        obj.box = clipped
        obj.occluded = any(_overlap(obj.box, later.box) > 0.05 for later in spec.objects[i + 1:])
    spec.objects = [o for o in spec.objects if o.box[2] - o.box[0] > 2 and o.box[3] - o.box[1] > 2]
    return spec


def _overlap(a: tuple, b: tuple) -> float:
    """Share of box a covered by box b."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    area = (a[2] - a[0]) * (a[3] - a[1])
    return max(w, 0) * max(h, 0) / area if area > 0 else 0.0


class SceneRenderer:
    """Draws SceneSpecs. Holds the background cache, so reuse one renderer for many frames."""

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng(seed)
        self._backgrounds: dict[tuple[str, str, str], np.ndarray] = {}
        self._rain = [self._streaks(self._rng, n=900, length=(18, 45)) for _ in range(3)]
        self._snow = [self._flakes(self._rng, n=1400) for _ in range(3)]

    @staticmethod
    def _streaks(rng: np.random.Generator, n: int, length: tuple[int, int]) -> np.ndarray:
        layer = np.zeros((HEIGHT, WIDTH), np.uint8)
        xs, ys = rng.integers(0, WIDTH, n), rng.integers(0, HEIGHT, n)
        lengths = rng.integers(*length, n)
        for x, y, ln in zip(xs.tolist(), ys.tolist(), lengths.tolist(), strict=True):
            cv2.line(layer, (x, y), (x - ln // 4, y + ln), 255, 2)
        return layer

    @staticmethod
    def _flakes(rng: np.random.Generator, n: int) -> np.ndarray:
        layer = np.zeros((HEIGHT, WIDTH), np.uint8)
        for x, y, r in zip(rng.integers(0, WIDTH, n).tolist(), rng.integers(0, HEIGHT, n).tolist(),
                           rng.integers(2, 6, n).tolist(), strict=True):
            cv2.circle(layer, (x, y), r, 255, -1)
        return layer

    def background(self, scene: str, timeofday: str, weather: str) -> np.ndarray:
        key = (scene, timeofday, weather)
        if key not in self._backgrounds:
            self._backgrounds[key] = self._draw_background(scene, timeofday, weather)
        return self._backgrounds[key]

    def _draw_background(self, scene: str, timeofday: str, weather: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(f"{scene}|{timeofday}|{weather}".encode()))
        img = np.empty((HEIGHT, WIDTH, 3), np.float32)
        top, bottom = (np.array(c, np.float32) for c in _SKY[timeofday])
        if weather in ("overcast", "rainy", "snowy", "foggy"):
            grey = {"overcast": 175, "rainy": 120, "snowy": 200, "foggy": 190}[weather] * _LIGHT_LEVEL[timeofday]
            top = top * 0.25 + grey * 0.75
            bottom = bottom * 0.25 + grey * 0.75
        t = np.linspace(0, 1, HORIZON, dtype=np.float32)[:, None, None]
        img[:HORIZON] = top * (1 - t) + bottom * t
        if timeofday == "night" and weather in ("clear", "partly cloudy"):
            for x, y in zip(rng.integers(0, WIDTH, 160).tolist(), rng.integers(0, HORIZON - 20, 160).tolist(),
                            strict=True):
                img[y:y + 2, x:x + 2] = 230
            cv2.circle(img, (int(WIDTH * 0.8), 80), 28, (215, 235, 240), -1)
        if weather == "clear" and timeofday == "daytime":
            cv2.circle(img, (int(WIDTH * 0.15), 70), 40, (220, 250, 255), -1)
        if weather == "partly cloudy":
            cloud = (235, 235, 235) if timeofday != "night" else (90, 90, 95)
            for _ in range(7):
                cx, cy = int(rng.integers(0, WIDTH)), int(rng.integers(30, HORIZON - 60))
                for _ in range(4):
                    cv2.ellipse(img, (cx + int(rng.integers(-70, 70)), cy + int(rng.integers(-15, 15))),
                                (int(rng.integers(60, 120)), int(rng.integers(25, 45))), 0, 0, 360, cloud, -1)
        self._draw_skyline(img, scene, rng, timeofday)
        light = _LIGHT_LEVEL[timeofday]
        verge = {"city street": (150, 150, 150), "highway": (70, 140, 90), "residential": (60, 150, 70)}[scene]
        img[HORIZON:] = np.array(verge, np.float32) * light
        road = np.array([[WIDTH / 2 - _road_half_width(HORIZON), HORIZON], [WIDTH / 2 + _road_half_width(HORIZON),
                         HORIZON], [WIDTH / 2 + _road_half_width(HEIGHT), HEIGHT],
                         [WIDTH / 2 - _road_half_width(HEIGHT), HEIGHT]], np.int32)
        road_grey = 95 * light * (0.7 if weather == "rainy" else 1.0)
        cv2.fillConvexPoly(img, road, (road_grey, road_grey, road_grey))
        for lane in (-1 / 3, 1 / 3):
            for y0 in range(HORIZON + 8, HEIGHT, 46):
                y1 = min(y0 + 24, HEIGHT)
                p0 = (int(WIDTH / 2 + lane * 2 * _road_half_width(y0)), y0)
                p1 = (int(WIDTH / 2 + lane * 2 * _road_half_width(y1)), y1)
                cv2.line(img, p0, p1, (230 * light,) * 3, max(2, (y0 - HORIZON) // 40))
        if weather == "snowy":
            snow = 235 * max(light, 0.45)
            ground = img[HORIZON:]
            ground[:] = ground * 0.35 + snow * 0.65
        if weather == "rainy":  # wet road: bright smeared reflections
            for x in rng.integers(WIDTH // 4, 3 * WIDTH // 4, 25).tolist():
                cv2.line(img, (x, HORIZON + 40), (x + int(rng.integers(-30, 30)), HEIGHT), (200 * light,) * 3, 3)
            img[HORIZON:] = cv2.GaussianBlur(img[HORIZON:], (0, 0), 3)
        return np.clip(img, 0, 255).astype(np.uint8)

    @staticmethod
    def _draw_skyline(img: np.ndarray, scene: str, rng: np.random.Generator, timeofday: str) -> None:
        light = _LIGHT_LEVEL[timeofday]
        if scene == "city street":
            x = 0
            while x < WIDTH:
                w, h = int(rng.integers(60, 160)), int(rng.integers(80, HORIZON - 40))
                shade = float(rng.uniform(70, 140)) * light
                cv2.rectangle(img, (x, HORIZON - h), (x + w, HORIZON), (shade, shade, shade * 1.05), -1)
                if timeofday != "daytime":  # lit windows
                    for wy in range(HORIZON - h + 10, HORIZON - 10, 22):
                        for wx in range(x + 8, x + w - 10, 18):
                            if rng.random() < 0.35:
                                cv2.rectangle(img, (wx, wy), (wx + 7, wy + 9), (90, 200, 240), -1)
                x += w + int(rng.integers(0, 20))
        elif scene == "residential":
            for x in range(0, WIDTH, 170):
                if abs(x + 60 - WIDTH / 2) < 160:
                    continue
                base, h = HORIZON, int(rng.integers(50, 80))
                colour = tuple(float(c) * light for c in rng.integers(110, 220, 3))
                cv2.rectangle(img, (x + 10, base - h), (x + 120, base), colour, -1)
                roof = np.array([[x, base - h], [x + 130, base - h], [x + 65, base - h - 45]], np.int32)
                cv2.fillConvexPoly(img, roof, (40 * light, 40 * light, 120 * light))
        else:  # highway: distant hills
            pts = [(0, HORIZON)] + [(x, HORIZON - int(rng.integers(10, 60))) for x in range(0, WIDTH + 80, 80)]
            cv2.fillPoly(img, [np.array(pts + [(WIDTH, HORIZON)], np.int32)], (90 * light, 120 * light, 100 * light))

    def render(self, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
        """The frame (BGR uint8, 720x1280) of a scene spec."""
        img = self.background(spec.scene, spec.timeofday, spec.weather).copy()
        light = _LIGHT_LEVEL[spec.timeofday]
        for obj in spec.objects:
            _draw_object(img, obj, rng, light, night=spec.timeofday == "night")
        if spec.weather == "rainy":
            layer = self._rain[int(rng.integers(0, len(self._rain)))]
            img[layer > 0] = (img[layer > 0] * 0.5 + 100).astype(np.uint8)
        elif spec.weather == "snowy":
            img[self._snow[int(rng.integers(0, len(self._snow)))] > 0] = 245
        elif spec.weather == "foggy":
            fog = 200 * max(light, 0.5)
            img = cv2.addWeighted(img, 0.35, np.full_like(img, int(fog)), 0.65, 0)
        return img


def _draw_object(img: np.ndarray, obj: SceneObject, rng: np.random.Generator, light: float, night: bool) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
    w, h = x2 - x1, y2 - y1
    if obj.category in ("car", "truck", "bus"):
        paint = obj.paint or _CAR_COLORS[int(rng.integers(0, len(_CAR_COLORS)))]
        colour = tuple(c * max(light, 0.4) for c in paint)
        cv2.rectangle(img, (x1, y1 + h // 4), (x2, y2 - h // 8), colour, -1)
        cv2.rectangle(img, (x1 + w // 6, y1), (x2 - w // 6, y1 + h // 3), colour, -1)
        cv2.rectangle(img, (x1 + w // 5, y1 + h // 12), (x2 - w // 5, y1 + h // 3), (60, 50, 40), -1)
        wheel = max(h // 8, 1)
        cv2.rectangle(img, (x1 + w // 10, y2 - wheel), (x1 + w // 4, y2), (15, 15, 15), -1)
        cv2.rectangle(img, (x2 - w // 4, y2 - wheel), (x2 - w // 10, y2), (15, 15, 15), -1)
        lamp = (40, 40, 255) if night else (30, 30, 160)
        r = max(w // 14, 2)
        cv2.circle(img, (x1 + w // 8, y1 + h // 2), r, lamp, -1)
        cv2.circle(img, (x2 - w // 8, y1 + h // 2), r, lamp, -1)
    elif obj.category == "pedestrian":
        colour = tuple(c * max(light, 0.5) for c in rng.integers(40, 200, 3).tolist())
        head = max(w // 2, 2)
        cv2.circle(img, (x1 + w // 2, y1 + head), head, (140 * light + 40, 170 * light + 40, 200 * light + 40), -1)
        cv2.rectangle(img, (x1, y1 + 2 * head), (x2, y1 + int(h * 0.6)), colour, -1)
        cv2.rectangle(img, (x1 + w // 6, y1 + int(h * 0.6)), (x2 - w // 6, y2), (50, 40, 40), -1)
    elif obj.category == "traffic light":
        cv2.line(img, (x1 + w // 2, y2), (x1 + w // 2, HORIZON + 10), (40, 40, 40), max(w // 6, 2))
        cv2.rectangle(img, (x1, y1), (x2, y2), (25, 25, 25), -1)
        lit = {"red": (0, (40, 40, 255)), "yellow": (1, (40, 220, 255)), "green": (2, (100, 255, 60))}
        slot, colour = lit.get(obj.light_color, (-1, None))
        for i in range(3):
            centre = (x1 + w // 2, y1 + int(h * (i + 0.5) / 3))
            cv2.circle(img, centre, max(w // 3, 2), colour if i == slot else (55, 55, 55), -1)
    elif obj.category == "traffic sign":
        cv2.line(img, (x1 + w // 2, y2), (x1 + w // 2, HORIZON + 30), (90, 90, 90), 3)
        cv2.rectangle(img, (x1, y1), (x2, y2), (190 * light + 40, 90 * light, 20), -1)
        cv2.rectangle(img, (x1 + 3, y1 + 3), (x2 - 3, y2 - 3), (240 * light + 15,) * 3, 2)


def balanced_conditions(n: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """n (weather, timeofday, scene) triples: every weather x time pair equally often, order shuffled."""
    pairs = list(itertools.product(DRAWN_WEATHERS, DRAWN_TIMES_OF_DAY))
    out: list[tuple[str, str, str]] = []
    while len(out) < n:
        order = rng.permutation(len(pairs)).tolist()
        out.extend((*pairs[i], DRAWN_SCENES[int(rng.integers(0, len(DRAWN_SCENES)))]) for i in order)
    return out[:n]


def random_record(rng: random.Random, name: str, attributes: bool = True) -> FrameRecord:
    """A label record with no image: 0-6 boxes of any det_20 category and size (a colour for traffic lights) and, with
    `attributes`, a drawn weather, scene and time of day. What the caption grammar's tests and benchmarks feed it."""
    boxes = []
    for _ in range(rng.randint(0, 6)):
        category = rng.choice(DET20_CATEGORIES)
        size = rng.choice((30, 60, 150, 400))
        x = rng.uniform(0, 1280 - size)
        colour = rng.choice(("red", "yellow", "green", None)) if category == "traffic light" else None
        boxes.append(Box(category, x, 300, x + size, 300 + size * 0.8, False, False, colour))
    if not attributes:
        return FrameRecord(name, boxes=tuple(boxes))
    return FrameRecord(name, rng.choice(DRAWN_WEATHERS), rng.choice(DRAWN_SCENES), rng.choice(DRAWN_TIMES_OF_DAY),
                       tuple(boxes))


def frame_name(rng: np.random.Generator) -> str:
    """A BDD-style name: two 8-hex-digit groups."""
    a, b = rng.integers(0, 2**32, 2, dtype=np.uint64).tolist()
    return f"{a:08x}-{b:08x}.jpg"


def generate_dataset(root: str | Path, n_frames: int, split: str = "train", seed: int = 0,
                     jpeg_quality: int = 90, progress: bool = False) -> Path:
    """Write n_frames synthetic frames and their det_20 label file under root; returns the label file."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    root = Path(root)
    image_dir = root / "images" / "100k" / split
    label_dir = root / "labels" / "det_20"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, sum(split.encode())])
    renderer = SceneRenderer(seed)
    frames = []
    conditions = balanced_conditions(n_frames, rng)
    for index, (weather, timeofday, scene) in enumerate(progress_bar(conditions, desc=f"drawing {split}", unit="frame",
                                                                     disable=not progress)):
        spec = random_scene(rng, frame_name(rng), weather, timeofday, scene)
        image = renderer.render(spec, rng)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {spec.name}")
        (image_dir / spec.name).write_bytes(encoded.tobytes())
        frames.append(spec.to_det20(frame_index=index))
    label_file = label_dir / f"det_{split}.json"
    tmp = label_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(frames), encoding="utf-8")
    tmp.replace(label_file)
    return label_file


#: Cityscapes' label names for the drawn object classes (gtFine polygons).
_CITYSCAPES_LABELS = {"pedestrian": "person", "car": "car", "truck": "truck", "bus": "bus",
                      "traffic light": "traffic light", "traffic sign": "traffic sign"}
CITYSCAPES_SIZE = (2048, 1024)
CITYSCAPES_CITIES = ("aachen", "bremen", "zurich")


def generate_cityscapes(root: str | Path, n_frames: int, split: str = "train", seed: int = 0,
                        progress: bool = False) -> Path:
    """Write n_frames Cityscapes-format frames under root; returns the split's gtFine folder.

    The same street scenes as `generate_dataset`, as Cityscapes records them: daytime, fair weather, city streets,
    2048x1024 PNGs at leftImg8bit/{split}/{city}/{city}_{seq}_000019_leftImg8bit.png and gtFine polygon files
    (imgHeight, imgWidth, objects[label, polygon]) beside them, stuff (sky, road) first as in the released files.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    root = Path(root)
    rng = np.random.default_rng([seed, sum(split.encode()), 2])
    renderer = SceneRenderer(seed)
    width, height = CITYSCAPES_SIZE
    sx, sy = width / WIDTH, height / HEIGHT

    def polygon(points) -> list[list[int]]:
        return [[int(round(x * sx)), int(round(y * sy))] for x, y in points]

    road = [(WIDTH / 2 - _road_half_width(HORIZON), HORIZON), (WIDTH / 2 + _road_half_width(HORIZON), HORIZON),
            (WIDTH / 2 + _road_half_width(HEIGHT), HEIGHT - 1), (WIDTH / 2 - _road_half_width(HEIGHT), HEIGHT - 1)]
    stuff = [{"label": "sky", "polygon": polygon([(0, 0), (WIDTH - 1, 0), (WIDTH - 1, HORIZON), (0, HORIZON)])},
             {"label": "road", "polygon": polygon(road)}]
    for index in progress_bar(range(n_frames), desc=f"drawing cityscapes {split}", unit="frame", disable=not progress):
        city = CITYSCAPES_CITIES[index % len(CITYSCAPES_CITIES)]
        stem = f"{city}_{index:06d}_000019"
        weather = ("clear", "partly cloudy", "overcast")[int(rng.integers(0, 3))]
        spec = random_scene(rng, stem, weather, "daytime", "city street")
        image = cv2.resize(renderer.render(spec, rng), (width, height), interpolation=cv2.INTER_LINEAR)
        objects = list(stuff)
        for obj in spec.objects:
            x1, y1, x2, y2 = obj.box
            objects.append({"label": _CITYSCAPES_LABELS[obj.category],
                            "polygon": polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])})
        image_dir = root / "leftImg8bit" / split / city
        label_dir = root / "gtFine" / split / city
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(image_dir / f"{stem}_leftImg8bit.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise RuntimeError(f"PNG encoding failed for {stem}")
        labels = {"imgHeight": height, "imgWidth": width, "objects": objects}
        (label_dir / f"{stem}_gtFine_polygons.json").write_text(json.dumps(labels), encoding="utf-8")
    return root / "gtFine" / split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blip_train.datasets.synthetic",
        description="Draw a synthetic BDD100K-style dataset (1280x720 JPEGs + det_20 labels) under --out.")
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--frames", type=int, default=100, help="frames per split (default 100)")
    parser.add_argument("--splits", default="train,val", help="comma-separated splits (default train,val)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", choices=("bdd100k", "cityscapes"), default="bdd100k",
                        help="bdd100k (1280x720 JPEG + det_20) or cityscapes (2048x1024 leftImg8bit PNG + gtFine "
                             "polygons; daytime, fair weather, city streets) (default bdd100k)")
    args = parser.parse_args(argv)
    if args.frames < 0:
        parser.error("--frames must be >= 0")
    write = generate_cityscapes if args.format == "cityscapes" else generate_dataset
    for split in filter(None, args.splits.split(",")):
        label_file = write(args.out, args.frames, split=split, seed=args.seed, progress=True)
        print(f"{split}: {args.frames} frames -> {label_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
