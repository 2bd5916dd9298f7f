"""Cityscapes gtFine polygons -> records and captions: object classes, groups, stuff skipped, no weather/time."""

import json

import pytest

from blip_train.attributes import detect_attribute, mentioned_categories
from blip_train.captions import caption_frame
from blip_train.datasets.cityscapes import image_path, load_cityscapes
from blip_train.datasets.records import LabelFormatError


def write_frame(root, split, city, frame, objects, width=2048, height=1024):
    folder = root / "gtFine" / split / city
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{city}_000000_{frame:06d}_gtFine_polygons.json"
    path.write_text(json.dumps({"imgHeight": height, "imgWidth": width, "objects": objects}))
    return path


def obj(label, x1, y1, x2, y2):
    return {"label": label, "polygon": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]}


def test_objects_become_det20_boxes_and_stuff_is_skipped(tmp_path):
    write_frame(tmp_path, "val", "frankfurt", 19, [
        obj("road", 0, 500, 2047, 1023), obj("sky", 0, 0, 2047, 300), obj("ego vehicle", 0, 900, 2047, 1023),
        obj("car", 900, 450, 1150, 620), obj("cargroup", 100, 480, 400, 560), obj("person", 1700, 400, 1760, 600),
        obj("traffic light", 1000, 100, 1030, 180), obj("caravan", 1500, 400, 1700, 560),
        obj("hoverboard", 10, 10, 40, 40),
    ])
    frames, report = load_cityscapes(tmp_path, "val")
    (frame,) = frames
    assert frame.name == "frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    assert image_path(tmp_path, "val", frame.name) == (
        tmp_path / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000019_leftImg8bit.png")
    assert sorted(b.category for b in frame.boxes) == ["car", "car", "other vehicle", "pedestrian", "traffic light"]
    assert (frame.image_width, frame.image_height) == (2048, 1024)
    assert report.unknown_categories == {"hoverboard": 1}


def test_captions_use_the_frame_size_and_state_no_weather_or_time(tmp_path):
    write_frame(tmp_path, "train", "aachen", 1, [obj("car", 1400, 400, 2040, 900), obj("person", 950, 500, 1000, 560)])
    (frame,), _ = load_cityscapes(tmp_path, "train")
    caption = caption_frame(frame)
    # 2048 px wide: a box centred at x=1720 is on the right, and 500 px of 1024 is close by.
    assert "a car on the right, close by" in caption and "a pedestrian ahead" in caption
    assert detect_attribute(caption, "weather") is None and detect_attribute(caption, "timeofday") is None
    assert detect_attribute(caption, "scene") == "city street"
    assert mentioned_categories(caption) == {"car", "pedestrian"}


def test_malformed_files_name_the_file(tmp_path):
    path = write_frame(tmp_path, "val", "lindau", 3, [{"label": "car", "polygon": [[1, "a"]]}])
    with pytest.raises(LabelFormatError, match="lindau_000000_000003_gtFine_polygons.json.*malformed polygon"):
        load_cityscapes(tmp_path, "val")
    path.write_text("{}")
    with pytest.raises(LabelFormatError, match="not a Cityscapes polygon file"):
        load_cityscapes(tmp_path, "val")
    with pytest.raises(LabelFormatError, match="no Cityscapes gtFine folder"):
        load_cityscapes(tmp_path, "test")
