"""BDD100K label loading: both released formats, tagging files, and clear errors for broken files."""

import json
from pathlib import Path

import pytest

from blip_train.datasets.bdd100k import find_label_file, load_frames, parse_frames
from blip_train.datasets.records import LabelFormatError

DATA = Path(__file__).parent / "data"


def test_det20_frames_keep_attributes_boxes_and_light_colours():
    frames, report = load_frames(DATA / "det20_frames.json")
    assert [f.name for f in frames] == ["c0a1b2c3-d4e5f607.jpg", "c0a1b2c3-0badf00d.jpg"]
    first = frames[0]
    assert first.attributes == {"weather": "rainy", "scene": "city street", "timeofday": "night"}
    assert first.video_name == "c0a1b2c3-d4e5f607" and first.timestamp_ms == 10000
    assert [b.category for b in first.boxes] == ["car", "car", "traffic light", "traffic light", "pedestrian",
                                                "traffic sign"]
    car = first.boxes[0]
    assert (car.x1, car.y1, car.x2, car.y2) == (560.0, 300.25, 700.5, 420.75)
    assert car.occluded and not car.truncated and car.light_color is None
    assert first.boxes[1].truncated
    assert {b.light_color for b in first.boxes if b.category == "traffic light"} == {"red"}
    assert frames[1].boxes == () and frames[1].has_object_labels
    assert report.frames == 2 and report.boxes == 6 and report.warnings() == []


def test_2018_format_maps_category_names_and_skips_polygons():
    frames, report = load_frames(DATA / "labels_images_2018.json")
    (frame,) = frames
    assert [b.category for b in frame.boxes] == ["pedestrian", "motorcycle", "bicycle", "traffic light"]
    assert [b.light_color for b in frame.boxes] == [None, None, None, "green"]
    assert report.polygons_skipped == 2
    assert frame.attributes == {"weather": "snowy", "scene": "highway", "timeofday": "dawn/dusk"}


def test_tagging_frames_have_attributes_but_no_object_labels():
    frames, _ = load_frames(DATA / "tag_frames.json")
    assert [f.scene for f in frames] == ["tunnel", "parking lot"]
    assert not any(f.has_object_labels for f in frames)


def test_scalabel_dataset_dict_and_missing_attributes():
    data = {"frames": [{"name": "a.jpg", "labels": [{"category": "car", "box2d": {"x1": 1, "y1": 2, "x2": 30,
                                                                                  "y2": 40}}]}],
            "config": {"categories": []}}
    frames, _ = parse_frames(data)
    assert frames[0].attributes == {"weather": "undefined", "scene": "undefined", "timeofday": "undefined"}
    assert frames[0].boxes[0].x2 == 30.0 and not frames[0].boxes[0].occluded


def test_unknown_categories_and_values_are_kept_and_reported():
    data = [{"name": "a.jpg", "attributes": {"weather": "hazy", "scene": "city street", "timeofday": "night"},
             "labels": [{"category": "scooter", "attributes": {"trafficLightColor": "blue"},
                         "box2d": {"x1": 0, "y1": 0, "x2": 50, "y2": 50}}]}]
    frames, report = parse_frames(data, source="x.json")
    assert frames[0].weather == "hazy" and frames[0].boxes[0].category == "scooter"
    assert frames[0].boxes[0].light_color is None
    warnings = "\n".join(report.warnings())
    assert "scooter (1)" in warnings and "weather=hazy (1)" in warnings and "blue (1)" in warnings
    assert all(w.startswith("x.json:") for w in report.warnings())


def test_swapped_corners_are_normalised():
    frames, _ = parse_frames([{"name": "a.jpg", "labels": [{"category": "car",
                                                           "box2d": {"x1": 90, "y1": 80, "x2": 10, "y2": 20}}]}])
    box = frames[0].boxes[0]
    assert (box.x1, box.y1, box.x2, box.y2) == (10, 20, 90, 80)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "label file is empty"),
        ("[{\"name\": \"a.jpg\",", "not valid JSON"),
        ("42", "expected a list of frames"),
        ("[{\"name\": \"a.jpg\"}, {\"labels\": []}]", "frame 1"),
        ("[{\"name\": \"a.jpg\"}, {\"name\": \"b.jpg\", \"labels\": {}}]", "frame 1 (b.jpg)"),
        ("[{\"name\": \"b.jpg\", \"labels\": [{\"category\": \"car\", \"box2d\": {\"x1\": \"left\"}}]}]",
         "frame 0 (b.jpg)"),
        ("[{\"name\": \"\"}]", "empty 'name'"),
    ],
)
def test_malformed_files_name_the_file_and_the_frame(tmp_path, content, expected):
    path = tmp_path / "det_val.json"
    path.write_text(content)
    with pytest.raises(LabelFormatError) as info:
        load_frames(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_file_is_a_label_error(tmp_path):
    with pytest.raises(LabelFormatError, match="not found"):
        load_frames(tmp_path / "nope.json")


def test_find_label_file_prefers_det20_then_2018(tmp_path):
    with pytest.raises(LabelFormatError, match="no label file for split 'val'"):
        find_label_file(tmp_path, "val")
    old = tmp_path / "labels" / "bdd100k_labels_images_val.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps([]))
    assert find_label_file(tmp_path, "val") == old
    det = tmp_path / "labels" / "det_20" / "det_val.json"
    det.parent.mkdir()
    det.write_text(json.dumps([]))
    assert find_label_file(tmp_path, "val") == det
