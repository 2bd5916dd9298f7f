"""caption-bag on a generated drive: every frame captioned with its stamp and the right sensor matches."""

import json
import subprocess
import sys

import numpy as np
import pytest

from blip_caption_ros import bag_io
from blip_caption_ros.backends import CaptionerConfig, load_captioner
from blip_caption_ros.caption_bag import caption_bag, decode_image
from blip_caption_ros.sensors import summarize_lidar, summarize_radar


@pytest.fixture
def drive(drive_bag):
    return drive_bag


@pytest.fixture(scope="module")
def captioner(tiny_blip_dir):
    return load_captioner(CaptionerConfig(model=str(tiny_blip_dir), max_new_tokens=8))


def _read(bag, topics=None):
    out = {}
    with bag_io.BagReader(bag) as reader:
        for m in reader.messages(topics):
            out.setdefault(m.topic, []).append((m.time_ns, reader.decode(m)))
    return out


def test_every_frame_gets_its_caption_and_nearest_sensors(drive, captioner, tmp_path):
    stats = caption_bag(drive, tmp_path / "out", captioner, rate_hz=0, max_sensor_offset_ms=60)
    source = _read(drive)
    result = _read(tmp_path / "out")
    images = source["/front/image/compressed"]
    assert stats.captioned["front"] == len(images) == 15
    for topic, messages in source.items():  # the original topics are all copied
        assert len(result[topic]) == len(messages)
    lidar = {bag_io.stamp_of(m): m for _, m in source["/lidar/points"]}
    radar = {bag_io.stamp_of(m): m for _, m in source["/radar/points"]}
    records = [json.loads(m.data) for _, m in result["/front/caption"]]
    assert [r["stamp"]["sec"] * 10**9 + r["stamp"]["nanosec"] for r in records] == [
        bag_io.stamp_of(m) for _, m in images]
    for (_, image), record in zip(images, records, strict=True):
        stamp = bag_io.stamp_of(image)
        nearest_lidar = min(lidar, key=lambda s: abs(s - stamp))
        nearest_radar = min(radar, key=lambda s: abs(s - stamp))
        assert record["lidar"]["offset_ms"] == pytest.approx((nearest_lidar - stamp) / 1e6)
        assert record["lidar"]["sector"]["nearest_m"] == pytest.approx(
            summarize_lidar(lidar[nearest_lidar]).sector_nearest_m, abs=1e-3)
        assert record["radar"]["offset_ms"] == pytest.approx((nearest_radar - stamp) / 1e6)
        assert record["radar"]["closing_speed_mps"] == pytest.approx(
            summarize_radar(radar[nearest_radar]).closing_speed_mps, abs=1e-3)
        assert record["frame_id"] == image.header.frame_id and record["backend"] == "torch"
        assert record["caption"] == captioner.caption([decode_image(image, image.__msgtype__)])[0]
    markers = [m for _, m in result["/front/caption/marker"]]
    overlays = [m for _, m in result["/front/caption/image/compressed"]]
    assert [m.text for m in markers] == [r["caption"] for r in records]
    assert [bag_io.stamp_of(m) for m in overlays] == [bag_io.stamp_of(m) for _, m in images]


def test_sensors_outside_the_window_are_null_and_rate_limits_captions(drive, captioner, tmp_path):
    # LiDAR sweeps are 13 ms after each frame, radar scans 21 ms after (or 29 ms before): a 15 ms window keeps
    # only the LiDAR.
    caption_bag(drive, tmp_path / "out", captioner, rate_hz=2.0, max_sensor_offset_ms=15)
    records = [json.loads(m.data) for _, m in _read(tmp_path / "out", ["/front/caption"])["/front/caption"]]
    stamps = [r["stamp"]["sec"] * 10**9 + r["stamp"]["nanosec"] for r in records]
    assert len(records) == 3 and all(np.diff(stamps) >= 500_000_000)
    assert all(r["lidar"]["offset_ms"] == pytest.approx(13.0) for r in records)
    assert all(r["radar"] is None for r in records)


def test_output_is_mcap_that_the_ros2_mcap_reader_decodes(drive, captioner, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    caption_bag(drive, tmp_path / "out", captioner, rate_hz=5.0)
    (mcap_file,) = (tmp_path / "out").glob("*.mcap")
    with mcap_file.open("rb") as f:
        topics = [(channel.topic, schema.name) for schema, channel, _, _ in
                  make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]
    assert ("/front/caption", "std_msgs/msg/String") in topics
    assert ("/front/caption/marker", "visualization_msgs/msg/Marker") in topics
    assert ("/front/caption/image/compressed", "sensor_msgs/msg/CompressedImage") in topics


def test_an_interrupted_run_leaves_no_output(drive, tmp_path):
    class Interrupted:
        backend, model_name = "test", "interrupted"

        def caption(self, images, prompt=None):
            raise KeyboardInterrupt  # Ctrl-C in the middle of a batch

    with pytest.raises(KeyboardInterrupt):
        caption_bag(drive, tmp_path / "out", Interrupted(), rate_hz=1.0)
    assert list(tmp_path.iterdir()) == []


def test_model_errors_are_counted_and_the_bag_goes_on(drive, captioner, tmp_path, capsys):
    class EveryThirdFails:
        backend, model_name = captioner.backend, captioner.model_name

        def __init__(self):
            self.batches = 0

        def caption(self, images, prompt=None):
            self.batches += 1
            if self.batches % 3 == 0:
                raise RuntimeError(f"model failure {self.batches}")
            return captioner.caption(images, prompt)

    stats = caption_bag(drive, tmp_path / "out", EveryThirdFails(), rate_hz=0)
    assert stats.failed["front"] == 5 and stats.captioned["front"] == 10  # 15 frames, one per batch
    records = _read(tmp_path / "out", ["/front/caption"])["/front/caption"]
    assert len(records) == 10
    assert "model failure 3" in capsys.readouterr().err


def test_cli_errors_name_the_input(drive, tiny_blip_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "blip_caption_ros.caption_bag", *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    missing_model = run(drive, "--out", tmp_path / "a", "--model", tmp_path / "no_model")
    assert missing_model.returncode == 2 and "no_model" in missing_model.stderr
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 64)
    bad_bag = run(broken, "--out", tmp_path / "b", "--model", tiny_blip_dir)
    assert bad_bag.returncode == 2 and "broken.mcap" in bad_bag.stderr
    for result in (missing_model, bad_bag):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
