"""The synthetic BDD-style scene generator: layout, format, balance, and what the pixels show."""

import itertools
import json

import cv2
import numpy as np
import pytest

from blip_train.captions import caption_frame
from blip_train.datasets.bdd100k import load_frames
from blip_train.datasets.synthetic import (
    DRAWN_TIMES_OF_DAY,
    DRAWN_WEATHERS,
    HEIGHT,
    WIDTH,
    SceneRenderer,
    generate_dataset,
    random_scene,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    label_file = generate_dataset(root, n_frames=len(DRAWN_WEATHERS) * len(DRAWN_TIMES_OF_DAY), split="val", seed=3)
    return root, label_file


def test_layout_and_det20_format(dataset):
    root, label_file = dataset
    assert label_file == root / "labels" / "det_20" / "det_val.json"
    raw = json.loads(label_file.read_text())
    assert set(raw[0]) == {"videoName", "name", "frameIndex", "timestamp", "labels", "attributes"}
    for frame in raw:
        for label in frame["labels"]:
            assert set(label) == {"id", "category", "attributes", "manualShape", "box2d", "poly2d", "box3d"}
            assert set(label["attributes"]) == {"occluded", "truncated", "trafficLightColor"}
            assert label["attributes"]["trafficLightColor"] in {"NA", "R", "Y", "G"}
    frames, report = load_frames(label_file)
    assert report.warnings() == []
    for frame in frames:
        image = cv2.imread(str(root / "images" / "100k" / "val" / frame.name))
        assert image is not None and image.shape == (HEIGHT, WIDTH, 3)
        for b in frame.boxes:
            assert 0 <= b.x1 < b.x2 <= WIDTH and 0 <= b.y1 < b.y2 <= HEIGHT
        assert caption_frame(frame)


def test_every_weather_and_time_pair_appears_equally(dataset):
    frames, _ = load_frames(dataset[1])
    pairs = sorted((f.weather, f.timeofday) for f in frames)
    assert pairs == sorted(itertools.product(DRAWN_WEATHERS, DRAWN_TIMES_OF_DAY))


def test_same_seed_same_dataset(tmp_path):
    a = generate_dataset(tmp_path / "a", 4, split="train", seed=7)
    b = generate_dataset(tmp_path / "b", 4, split="train", seed=7)
    assert a.read_text() == b.read_text()
    c = generate_dataset(tmp_path / "c", 4, split="train", seed=8)
    assert a.read_text() != c.read_text()


def _render(weather, timeofday, seed=0):
    rng = np.random.default_rng(seed)
    spec = random_scene(rng, "x.jpg", weather, timeofday, "city street")
    return spec, SceneRenderer(seed).render(spec, rng)


def test_time_of_day_and_weather_are_visible_in_the_pixels():
    brightness = {t: _render("clear", t)[1].mean() for t in DRAWN_TIMES_OF_DAY}
    assert brightness["night"] < brightness["dawn/dusk"] < brightness["daytime"]
    clear, foggy = _render("clear", "daytime")[1], _render("foggy", "daytime")[1]
    assert foggy.std() < 0.6 * clear.std()
    snowy = _render("snowy", "daytime")[1]
    assert snowy[HEIGHT // 2:].mean() > clear[HEIGHT // 2:].mean() + 30


def test_objects_are_drawn_where_their_boxes_say():
    renderer = SceneRenderer(0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        spec = random_scene(rng, "x.jpg", "clear", "daytime", "city street")
        image = renderer.render(spec, rng).astype(int)
        background = renderer.background("city street", "daytime", "clear").astype(int)
        for obj in spec.objects:
            x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
            changed = np.abs(image[y1:y2, x1:x2] - background[y1:y2, x1:x2]).sum(axis=2) > 0
            assert changed.mean() > 0.3, (obj.category, obj.box)


def test_occlusion_and_truncation_flags_follow_the_drawing():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        spec = random_scene(rng, "x.jpg", "clear", "daytime", "city street")
        for obj in spec.objects:
            x1, y1, x2, y2 = obj.box
            if obj.truncated:
                assert x1 == 0 or y1 == 0 or x2 == WIDTH - 1 or y2 == HEIGHT - 1
