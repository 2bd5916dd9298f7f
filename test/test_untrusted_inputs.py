"""Size limits of the untrusted-input readers (blip_caption_ros.input_limits), exercised with small overrides."""

from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pytest

from blip_caption_ros import bag_io
from blip_caption_ros.imaging import ImageConversionError, compressed_to_rgb, image_to_rgb
from blip_caption_ros.input_limits import IMAGE_PIXELS, encoded_image_size
from blip_train.datasets.bdd100k import load_frames
from blip_train.datasets.bddx import BddxFormatError, load_bddx
from blip_train.datasets.cityscapes import load_cityscapes
from blip_train.datasets.records import LabelFormatError
from blip_train.drives import bag_messages
from blip_train.drives.bdd_to_bag import ConversionError, load_info
from test import support
from test.support import REPO

FRAME = {"name": "a.jpg", "attributes": {"weather": "clear", "scene": "highway", "timeofday": "daytime"},
         "labels": [{"category": "car", "box2d": {"x1": 1, "y1": 2, "x2": 30, "y2": 40}}]}
DEEP = "[" * 100_000 + "]" * 100_000


def test_label_file_size_limit_names_the_file_and_the_variable(tmp_path, monkeypatch):
    path = tmp_path / "det_train.json"
    path.write_text(json.dumps([FRAME] * 20))
    assert len(load_frames(path)[0]) == 20
    monkeypatch.setenv("BLIP_MAX_LABEL_FILE_BYTES", "100")
    with pytest.raises(LabelFormatError, match=rf"{re.escape(str(path))}: label file is \d+ bytes, over the limit of "
                                               r"100 bytes \(set BLIP_MAX_LABEL_FILE_BYTES to raise it\)"):
        load_frames(path)
    monkeypatch.setenv("BLIP_MAX_LABEL_FILE_BYTES", "lots")
    with pytest.raises(LabelFormatError, match="BLIP_MAX_LABEL_FILE_BYTES=.lots. is not an integer"):
        load_frames(path)


def test_deeply_nested_json_is_a_format_error_not_a_crash(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([{"name": "a.jpg", "labels": [{"category": "lane", "poly2d": []}]}])
                      .replace("[]", DEEP))
    with pytest.raises(LabelFormatError, match="nested too deeply"):
        load_frames(labels)
    info = tmp_path / "info.json"
    info.write_text('{"gps": ' + DEEP + "}")
    with pytest.raises(ConversionError, match="nested too deeply"):
        load_info(info)
    folder = tmp_path / "gtFine" / "train" / "aachen"
    folder.mkdir(parents=True)
    (folder / "aachen_000000_000019_gtFine_polygons.json").write_text(
        '{"imgWidth": 2048, "imgHeight": 1024, "objects": ' + DEEP + "}")
    with pytest.raises(LabelFormatError, match="not a Cityscapes polygon file"):
        load_cityscapes(tmp_path, "train")


def test_cityscapes_and_info_file_limits(tmp_path, monkeypatch):
    folder = tmp_path / "gtFine" / "train" / "aachen"
    folder.mkdir(parents=True)
    polygon = {"imgWidth": 2048, "imgHeight": 1024,
               "objects": [{"label": "car", "polygon": [[10, 10], [200, 10], [200, 100]]}] * 10}
    (folder / "aachen_000000_000019_gtFine_polygons.json").write_text(json.dumps(polygon))
    assert load_cityscapes(tmp_path, "train")[0][0].boxes
    monkeypatch.setenv("BLIP_MAX_CITYSCAPES_BYTES", "64")
    with pytest.raises(LabelFormatError, match="Cityscapes label file is .* BLIP_MAX_CITYSCAPES_BYTES"):
        load_cityscapes(tmp_path, "train")
    info = tmp_path / "video.json"
    info.write_text(json.dumps({"startTime": 1, "gps": [{"timestamp": 1, "latitude": 1, "longitude": 2}] * 10}))
    assert load_info(info)["startTime"] == 1
    monkeypatch.setenv("BLIP_MAX_INFO_BYTES", "64")
    with pytest.raises(ConversionError, match="BDD100K info file is .* BLIP_MAX_INFO_BYTES"):
        load_info(info)


def test_bddx_csv_limits(tmp_path, monkeypatch):
    sample = support.sample("bddx_Sample.csv")
    before = csv.field_size_limit()
    videos, _ = load_bddx(sample)
    assert videos and csv.field_size_limit() == before  # the csv module's process-wide limit is restored
    monkeypatch.setenv("BLIP_MAX_CSV_BYTES", "1000")
    with pytest.raises(BddxFormatError, match="BDD-X annotation file is .* BLIP_MAX_CSV_BYTES"):
        load_bddx(sample)
    monkeypatch.delenv("BLIP_MAX_CSV_BYTES")
    monkeypatch.setenv("BLIP_MAX_CSV_FIELD_CHARS", "20")  # the sample's sentences are longer
    with pytest.raises(BddxFormatError, match=r"line \d+: field larger than field limit \(20\).*BLIP_MAX_CSV_FIELD"):
        load_bddx(sample)
    assert csv.field_size_limit() == before
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"Input.Video,Answer.1action\nhttp://x/06d501fd-a9ffc960.mov,caf\xe9\n")
    with pytest.raises(BddxFormatError, match="not UTF-8"):
        load_bddx(latin)


def _jpeg(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def _png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def _with_size(encoded: bytes, width: int, height: int) -> bytes:
    """The same file with the size its header declares changed (what a decompression bomb looks like)."""
    data = bytearray(encoded)
    if encoded.startswith(b"\x89PNG"):
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:
        sof = encoded.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_encoded_image_size_reads_headers():
    assert encoded_image_size(_jpeg(64, 48)) == (64, 48)
    assert encoded_image_size(np.frombuffer(_png(33, 17), np.uint8)) == (33, 17)
    assert encoded_image_size(b"not an image") is None
    assert encoded_image_size(b"\xff\xd8\xff") is None  # truncated


@pytest.mark.parametrize("encode", [_jpeg, _png])
def test_absurd_compressed_images_are_refused_before_decoding(encode, monkeypatch):
    bomb = _with_size(encode(16, 16), 60000, 60000)

    def no_decode(*args):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(ImageConversionError, match=r"image 60000x60000 is 3600000000 pixels.*BLIP_MAX_IMAGE_PIXELS"):
        compressed_to_rgb("jpeg" if encode is _jpeg else "png", bomb)


def test_raw_image_pixel_limit(monkeypatch):
    rgb = np.zeros((10, 20, 3), np.uint8)
    assert image_to_rgb("rgb8", 10, 20, 60, rgb.tobytes()).shape == (10, 20, 3)
    monkeypatch.setenv("BLIP_MAX_IMAGE_PIXELS", "100")
    assert IMAGE_PIXELS.value() == 100
    with pytest.raises(ImageConversionError, match="rgb8 image 20x10 is 200 pixels, over the limit of 100"):
        image_to_rgb("rgb8", 10, 20, 60, rgb.tobytes())
    with pytest.raises(ImageConversionError, match="BLIP_MAX_IMAGE_PIXELS"):
        compressed_to_rgb("jpeg", _jpeg(20, 10))


def test_oversized_bag_message_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bag"
    with bag_io.BagWriter(path) as bag:
        bag.write("/front/image", 1, bag_messages.image_msg(np.zeros((4, 4, 3), np.uint8), 1, "cam"))
        bag.write("/front/image", 2, bag_messages.image_msg(np.zeros((40, 40, 3), np.uint8), 2, "cam"))
    monkeypatch.setenv("BLIP_MAX_BAG_MESSAGE_BYTES", "1000")
    with bag_io.BagReader(path) as reader:
        messages = reader.messages()
        assert reader.decode(next(messages)).width == 4
        with pytest.raises(bag_io.BagError, match=r"sensor_msgs/msg/Image on /front/image at 2 ns is \d+ bytes, "
                                                  r"over the limit of 1000 bytes \(set BLIP_MAX_BAG_MESSAGE_BYTES"):
            next(messages)


# Code that runs code: never on files or messages from outside.
_UNSAFE = [
    (re.compile(r"^\s*(import pickle|from pickle |import dill|import joblib|import marshal|import shelve)"), "pickle"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "eval/exec"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"yaml\.(load|unsafe_load|full_load)\("), "yaml.load (use yaml.safe_load)"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code"),
    (re.compile(r"use_safetensors\s*=\s*False"), "pickle weights"),
]


def test_no_code_runs_from_loaded_files():
    found = []
    for folder in ("blip_caption_ros", "blip_train", "bench", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                code = line.split("#", 1)[0]
                found += [f"{path.relative_to(REPO)}:{number}: {what}" for pattern, what in _UNSAFE
                          if pattern.search(code) and not (path.name == "model_loading.py" and "pickle" in what)]
                if "torch.load(" in code and "weights_only=True" not in code:
                    found.append(f"{path.relative_to(REPO)}:{number}: torch.load without weights_only=True")
    assert found == []
