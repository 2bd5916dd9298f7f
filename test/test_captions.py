"""The caption grammar: facts stated in every phrasing, plurals and number words, positions, and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blip_train.attributes import detect_attribute, mentioned_categories
from blip_train.captions import caption_frame, caption_vocabulary, counted, describe_group, number_word
from blip_train.datasets.bdd100k import load_frames
from blip_train.datasets.records import Box, FrameRecord

DATA = Path(__file__).parent / "data"
SEEDS = range(40)


def box(category="car", x1=600.0, y1=300.0, x2=680.0, y2=360.0, color=None, occluded=False, truncated=False):
    return Box(category, x1, y1, x2, y2, occluded, truncated, color)


@pytest.mark.parametrize(("n", "word"), [(1, "one"), (7, "seven"), (13, "thirteen"), (20, "twenty"),
                                         (42, "forty-two"), (99, "ninety-nine"), (120, "120")])
def test_number_words(n, word):
    assert number_word(n) == word


@pytest.mark.parametrize(("category", "n", "text"), [
    ("car", 1, "a car"), ("car", 3, "three cars"), ("bus", 2, "two buses"), ("other person", 2, "two people"),
    ("other vehicle", 1, "a special vehicle"), ("pedestrian", 2, "two pedestrians"), ("scooter", 2, "two scooters"),
])
def test_counted_nouns_use_articles_and_plurals(category, n, text):
    assert counted(category, n) == text


def test_every_phrasing_states_every_fact():
    frames, _ = load_frames(DATA / "det20_frames.json")
    frame = frames[0]
    captions = {caption_frame(frame, seed) for seed in SEEDS}
    assert len(captions) > 3, "the seeded RNG should vary the wording"
    for caption in captions:
        assert detect_attribute(caption, "weather") == "rainy", caption
        assert detect_attribute(caption, "timeofday") == "night", caption
        assert detect_attribute(caption, "scene") == "city street", caption
        # The 3x3 px traffic sign is too small to mention; everything else is.
        assert mentioned_categories(caption) == {"car", "traffic light", "pedestrian"}, caption
        assert "two red traffic lights ahead" in caption, caption
        assert "two cars, one ahead and one on the right, both close by" in caption, caption


def test_undefined_attributes_are_left_out_and_empty_frames_say_so():
    frames, _ = load_frames(DATA / "det20_frames.json")
    for seed in SEEDS:
        caption = caption_frame(frames[1], seed)
        assert detect_attribute(caption, "weather") is None and detect_attribute(caption, "scene") is None
        assert detect_attribute(caption, "timeofday") == "daytime"
        assert "no other road users are visible" in caption.lower()
        assert "undefined" not in caption


def test_frames_without_object_labels_claim_nothing_about_objects():
    frames, _ = load_frames(DATA / "tag_frames.json")
    caption = caption_frame(frames[0], seed=0)
    assert "road users" not in caption and mentioned_categories(caption) == set()
    assert detect_attribute(caption, "scene") == "tunnel" and detect_attribute(caption, "weather") == "foggy"


def test_2018_frames_skip_polygons_and_use_det20_names():
    frames, _ = load_frames(DATA / "labels_images_2018.json")
    caption = caption_frame(frames[0], seed=0)
    assert mentioned_categories(caption) == {"pedestrian", "motorcycle", "bicycle", "traffic light"}
    assert "green traffic light" in caption
    assert "lane" not in caption and "drivable" not in caption
    assert detect_attribute(caption, "timeofday") == "dawn/dusk"


def test_positions_and_distances_come_from_the_boxes():
    left_far = box(x1=50, y1=350, x2=70, y2=362)
    right_near = box(x1=1000, y1=300, x2=1270, y2=560)
    ahead_mid = box(x1=600, y1=330, x2=680, y2=390)
    assert describe_group("car", [left_far]) == "a car on the left, in the distance"
    assert describe_group("car", [right_near]) == "a car on the right, close by"
    assert describe_group("car", [ahead_mid]) == "a car ahead"
    assert describe_group("car", [left_far, right_near, ahead_mid]) == (
        "three cars, one on the left, one ahead and one on the right, one of them close by")
    assert describe_group("car", [left_far, left_far]) == "two cars on the left, both in the distance"


def test_light_colours_uniform_mixed_and_unknown():
    red, green, unknown = (box("traffic light", 600, 100, 620, 150, c) for c in ("red", "green", None))
    assert describe_group("traffic light", [red, red, red]) == "three red traffic lights ahead"
    assert describe_group("traffic light", [red, green]) == "two traffic lights ahead, one red and one green"
    assert describe_group("traffic light", [red, unknown, unknown]) == "three traffic lights ahead, one of them red"
    assert describe_group("traffic light", [unknown]) == "a traffic light ahead"


def test_occluded_and_truncated_boxes_still_count_and_tiny_ones_do_not():
    frame = FrameRecord(name="x.jpg", weather="clear", scene="highway", timeofday="daytime", boxes=(
        box(occluded=True), box(truncated=True, x1=1200, x2=1279), box(x1=10, y1=10, x2=13, y2=13)))
    caption = caption_frame(frame)
    assert "two cars, one ahead and one on the right" in caption


def test_caption_depends_on_seed_and_name_not_on_file_order():
    frames, _ = load_frames(DATA / "det20_frames.json")
    forward = [caption_frame(f, seed=5) for f in frames]
    backward = [caption_frame(f, seed=5) for f in reversed(frames)]
    assert forward == backward[::-1]


def test_vocabulary_covers_every_generated_word():
    frames, _ = load_frames(DATA / "det20_frames.json")
    frames += load_frames(DATA / "labels_images_2018.json")[0] + load_frames(DATA / "tag_frames.json")[0]
    vocab = set(caption_vocabulary())
    for frame in frames:
        for seed in SEEDS:
            text = caption_frame(frame, seed).lower()
            words = text.replace(",", " ").replace(".", " ").replace(";", " ").replace("-", " ").split()
            assert set(words) <= vocab, set(words) - vocab


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "blip_train.captions", *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_writes_one_json_object_per_frame():
    result = run_cli("--labels", str(DATA / "det20_frames.json"), "--seed", "3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in lines] == ["c0a1b2c3-d4e5f607.jpg", "c0a1b2c3-0badf00d.jpg"]
    assert lines[0]["attributes"] == {"weather": "rainy", "scene": "city street", "timeofday": "night"}
    frames, _ = load_frames(DATA / "det20_frames.json")
    assert lines[0]["caption"] == caption_frame(frames[0], seed=3)
    assert "2 frames, 6 boxes" in result.stderr


def test_cli_reports_unknowns_on_stderr_and_errors_without_traceback(tmp_path):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"name": "a.jpg", "labels": [{"category": "scooter",
                                                            "box2d": {"x1": 0, "y1": 0, "x2": 90, "y2": 90}}]}]))
    result = run_cli("--labels", str(odd))
    assert result.returncode == 0 and "scooter" in json.loads(result.stdout)["caption"]
    assert "unknown categories kept as-is: scooter (1)" in result.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('[{"name": "a.jpg", "labels": 7}]')
    result = run_cli("--labels", str(broken))
    assert result.returncode == 2 and result.stdout == ""
    assert f"error: {broken}: frame 0 (a.jpg)" in result.stderr and "Traceback" not in result.stderr
