"""The shared caption-fact checker: reads back exactly what the caption grammar writes, and scores sets of captions."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from blip_train.attributes import (
    AMBIGUOUS,
    attribute_correct,
    detect_attribute,
    labelled_categories,
    mentioned_categories,
    object_mentions,
    score_attribute,
    score_captions,
    score_objects,
)
from blip_train.captions import caption_frame, distance_of, group_boxes, region_of
from blip_train.datasets.records import DET20_CATEGORIES, SCENES, TIMES_OF_DAY, UNDEFINED, WEATHERS, Box, FrameRecord
from blip_train.datasets.synthetic import random_record


def box(category: str, x: float = 600, size: float = 120, color: str | None = None) -> Box:
    return Box(category, x, 300, x + size, 300 + size, False, False, color)


@pytest.mark.parametrize("seed", range(4))
def test_every_attribute_value_reads_back_from_every_phrasing(seed):
    for weather, scene, timeofday in itertools.product(WEATHERS, SCENES, TIMES_OF_DAY):
        frame = FrameRecord(f"f-{weather}-{scene}-{timeofday}.jpg", weather, scene, timeofday, (box("car"),))
        caption = caption_frame(frame, seed)
        for key, value in frame.attributes.items():
            if value == UNDEFINED:
                assert attribute_correct(caption, key, value) is None
            else:
                assert detect_attribute(caption, key) == value, (key, caption)


@pytest.mark.parametrize("category", DET20_CATEGORIES)
def test_every_category_reads_back(category):
    for count in (1, 3):
        frame = FrameRecord("x.jpg", boxes=tuple(box(category, x=100 + 400 * i) for i in range(count)))
        caption = caption_frame(frame)
        assert mentioned_categories(caption) == {category} == labelled_categories(frame), caption


def test_other_captioners_wordings_and_ambiguity():
    assert detect_attribute("a car driving on a sunny day downtown", "weather") == "clear"
    assert detect_attribute("a car driving on a sunny day downtown", "scene") == "city street"
    assert detect_attribute("a rainy night with snow", "weather") == AMBIGUOUS
    assert detect_attribute("a picture of a road", "timeofday") is None
    assert detect_attribute("under a partly cloudy sky", "weather") == "partly cloudy"
    assert detect_attribute("under an overcast sky", "weather") == "overcast"


def test_tiny_boxes_are_not_expected_in_captions():
    frame = FrameRecord("x.jpg", boxes=(box("car"), Box("pedestrian", 10, 10, 12, 13, False, False, None)))
    assert labelled_categories(frame) == {"car"}


def test_score_attribute_breakdown_and_majority():
    refs = ["night", "night", "night", "daytime", "undefined"]
    captions = ["at night", "during the day", "at night", "in daylight", "at night"]
    scores = score_attribute(captions, refs, "timeofday")
    assert scores["support"] == 4  # undefined is not scored
    assert scores["accuracy"] == pytest.approx(3 / 4)
    assert scores["majority_value"] == "night" and scores["majority_rate"] == pytest.approx(3 / 4)
    assert scores["per_value"]["night"] == {"accuracy": pytest.approx(2 / 3), "support": 3}
    assert scores["per_value"]["daytime"] == {"accuracy": 1.0, "support": 1}
    assert scores["confusion"]["night"] == {"night": 2, "daytime": 1}


def test_score_objects_recall_precision():
    frames = [FrameRecord("a.jpg", boxes=(box("car"), box("pedestrian", x=100))),
              FrameRecord("b.jpg", boxes=(box("bus"),)),
              FrameRecord("c.jpg", has_object_labels=False)]
    captions = ["two cars and a truck", "a bus", "a train"]  # frame c is not scored
    scores = score_objects(captions, frames)
    assert scores["frames"] == 2
    assert scores["recall"] == pytest.approx(2 / 3)  # car, bus of car, pedestrian, bus
    assert scores["precision"] == pytest.approx(2 / 3)  # car, bus of car, truck, bus
    assert scores["exact_set_rate"] == pytest.approx(1 / 2)
    assert scores["per_class"]["pedestrian"]["recall"] == 0.0
    assert scores["per_class"]["truck"] == {"recall": None, "support": 0, "precision": 0.0, "mentioned": 1}
    assert "train" not in scores["per_class"]


def test_reference_captions_score_perfectly():
    frames = [dataclasses.replace(FrameRecord(f"{i}.jpg", w, s, t, (box("car"),)))
              for i, (w, s, t) in enumerate(itertools.product(WEATHERS[:6], SCENES[:6], TIMES_OF_DAY[:3]))]
    scores = score_captions([caption_frame(f, 7) for f in frames], frames)
    for key in ("weather", "scene", "timeofday"):
        assert scores[key]["accuracy"] == 1.0
    assert scores["objects"]["recall"] == scores["objects"]["precision"] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_object_mentions_read_back_region_distance_and_light_colour(seed):
    rng = random.Random(seed)
    for index in range(150):
        frame = random_record(rng, f"r{index}.jpg", attributes=False)
        caption = caption_frame(frame, seed)
        mentions = object_mentions(caption)
        assert set(mentions) == mentioned_categories(caption), caption
        for category, boxes in group_boxes(frame.boxes):
            if category not in mentions:
                continue  # a class without a caption pattern (none today)
            mention = mentions[category]
            distances = [distance_of(b) for b in boxes]
            assert mention.regions == {region_of(b) for b in boxes}, (category, caption)
            assert mention.near == ("near" in distances), (category, caption)
            assert mention.far == (not mention.near and all(d == "far" for d in distances)), (category, caption)
            assert mention.colours == {b.light_color for b in boxes if b.light_color}, (category, caption)


def test_object_mentions_of_free_wordings():
    mentions = object_mentions("a pedestrian crossing on the left, a red traffic light ahead and a car close by")
    assert mentions["pedestrian"].regions == {"left"} and not mentions["pedestrian"].near
    assert mentions["traffic light"].colours == {"red"} and mentions["traffic light"].regions == {"ahead"}
    assert mentions["car"].near and mentions["car"].regions == set()
    assert object_mentions("on the right, a bus in the distance")["bus"] == dataclasses.replace(
        object_mentions("a bus")["bus"], regions=frozenset({"right"}), far=True)
    assert object_mentions("a red car") == {"car": object_mentions("a car")["car"]}  # colours are lights' only
    assert object_mentions("a picture of a road") == {}
