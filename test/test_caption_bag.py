"""caption-bag on a generated drive: every frame captioned with its stamp and the right sensor matches."""

import json
import subprocess
import sys

import numpy as np
import pytest

from blip_caption_ros import bag_io
from blip_caption_ros.backends import CaptionerConfig, load_captioner
from blip_caption_ros.caption_bag import camera_topics, caption_bag, decode_image
from blip_caption_ros.sensors import summarize_lidar, summarize_radar
from test import recorded_bags


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


@pytest.mark.slow
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


# --- bags shaped like real recordings (recorded_bags): vendor types, driver names, no definitions, ROS 1 ---


def _mcap_decoded(out):
    """topic -> decoded messages of an output bag, through the ROS 2 MCAP reader (which needs each definition)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (mcap_file,) = out.glob("*.mcap")
    decoded = {}
    with mcap_file.open("rb") as f:
        for _, channel, _, msg in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages(
                topics=["/radar/status"]):
            decoded.setdefault(channel.topic, []).append(msg)
    return decoded


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_driver_bag_with_vendor_types_and_service_events_is_captioned_and_copied(captioner, tmp_path, storage):
    written = recorded_bags.driver_bag(tmp_path / "in", storage=storage)
    stats = caption_bag(tmp_path / "in", tmp_path / "out", captioner, rate_hz=0)
    # Cameras found by type under driver names: /camera/color/image_raw -> camera/color, .../compressed -> camera.
    assert stats.captioned == {"camera/color": 10, "camera": 10} and not stats.skipped
    with bag_io.BagReader(tmp_path / "in") as source, bag_io.BagReader(tmp_path / "out") as out:
        source_raw = {}
        for m in source.messages():
            source_raw.setdefault(m.topic, []).append((m.time_ns, bytes(m.raw)))
        out_raw = {}
        for m in out.messages():
            out_raw.setdefault(m.topic, []).append((m.time_ns, bytes(m.raw)))
        assert out.topics[recorded_bags.SERVICE_EVENT_TOPIC] == recorded_bags.SERVICE_EVENT_TYPE
        assert out.topic_info["/radar/status"].definition.startswith(recorded_bags.VENDOR_DEFINITION.split("\n")[0])
    for topic, messages in source_raw.items():  # every input message copied unchanged, at its receive time
        assert out_raw[topic] == messages and len(messages) == len(written[topic])
    assert len(out_raw["/camera/color/caption"]) == len(out_raw["/camera/caption"]) == 10
    # The vendor type decodes from the output with the definition the input bag carried.
    assert [m.tracks for m in _mcap_decoded(tmp_path / "out")["/radar/status"]] == list(range(10))


def test_a_bag_without_definitions_copies_known_types_and_names_the_rest(captioner, tmp_path, capsys):
    recorded_bags.driver_bag(tmp_path / "in", storage="sqlite3")
    recorded_bags.drop_definitions(tmp_path / "in")  # as Humble's sqlite3 bags
    stats = caption_bag(tmp_path / "in", tmp_path / "out", captioner, rate_hz=0)
    assert {topic: count for topic, (_, count) in stats.skipped.items()} == {
        "/radar/status": 10, "/heartbeat": 10, recorded_bags.SERVICE_EVENT_TOPIC: 4}
    assert all("no definition" in reason for reason, _ in stats.skipped.values())
    err = capsys.readouterr().err
    assert err.count("not copying /radar/status") == 1  # named once, not per message
    assert stats.copied == {recorded_bags.IMAGE_TOPIC: 10, recorded_bags.COMPRESSED_TOPIC: 10}
    with bag_io.BagReader(tmp_path / "out") as out:
        assert "/radar/status" not in out.topics and len(list(out.messages(["/camera/caption"]))) == 10


def test_cameras_are_chosen_by_name_or_topic_and_renamed():
    topics = {recorded_bags.IMAGE_TOPIC: "sensor_msgs/msg/Image",
              recorded_bags.COMPRESSED_TOPIC: "sensor_msgs/msg/CompressedImage",
              "/front/image": "sensor_msgs/msg/Image", "/front/image/compressed": "sensor_msgs/msg/CompressedImage",
              "/radar/status": recorded_bags.VENDOR_TYPE}
    assert camera_topics(topics) == {recorded_bags.IMAGE_TOPIC: "camera/color", "/front/image": "front",
                                     recorded_bags.COMPRESSED_TOPIC: "camera"}
    assert camera_topics(topics, ["front"]) == {"/front/image": "front"}
    assert camera_topics(topics, [recorded_bags.COMPRESSED_TOPIC]) == {recorded_bags.COMPRESSED_TOPIC: "camera"}
    assert camera_topics(topics, None, {"left": recorded_bags.COMPRESSED_TOPIC}) == {
        recorded_bags.COMPRESSED_TOPIC: "left"}
    with pytest.raises(bag_io.BagError) as error:
        camera_topics(topics, ["rear"])
    for expected in ("matching rear", "/camera/color/image_raw (camera/color)", "--camera NAME=TOPIC"):
        assert expected in str(error.value)
    with pytest.raises(bag_io.BagError, match="not an image topic"):
        camera_topics(topics, None, {"x": "/radar/status"})
    with pytest.raises(bag_io.BagError, match=r"no topic of type .*\(topics: /radar/status \(acme_msgs"):
        camera_topics({"/radar/status": recorded_bags.VENDOR_TYPE})


def test_cli_camera_flag_renames_and_bad_flags_are_one_line(tiny_blip_dir, tmp_path):
    recorded_bags.driver_bag(tmp_path / "in", frames=3)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "blip_caption_ros.caption_bag", str(tmp_path / "in"),
                               "--model", str(tiny_blip_dir), "--max-new-tokens", "4", *args],
                              capture_output=True, text=True, timeout=180)

    renamed = run("--out", str(tmp_path / "a"), "--camera", f"front={recorded_bags.COMPRESSED_TOPIC}", "--rate", "0")
    assert renamed.returncode == 0, renamed.stderr
    with bag_io.BagReader(tmp_path / "a") as out:
        assert len(list(out.messages(["/front/caption"]))) == 3 and "/camera/caption" not in out.topics
    for flags, expected in ((["--camera", "front"], "expected NAME=TOPIC"),
                            (["--cameras", "rear"], "image topics (camera name):")):
        result = run("--out", str(tmp_path / "b"), *flags)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "b").exists()


def test_zero_stamps_are_timed_by_receive_time_and_said_once(captioner, tmp_path, capsys):
    recorded_bags.driver_bag(tmp_path / "in", frames=25, zero_stamps=True)  # 2.5 s at 10 Hz, every stamp 0
    stats = caption_bag(tmp_path / "in", tmp_path / "out", captioner, rate_hz=1.0, cameras=["camera"])
    assert stats.captioned == {"camera": 3}  # at 0, 1.0 and 2.0 s; not once for the whole drive
    assert stats.receive_time_stamps[recorded_bags.COMPRESSED_TOPIC] == 25
    assert capsys.readouterr().err.count("zero header stamps") == 1
    records = [json.loads(m.data) for _, m in _read(tmp_path / "out", ["/camera/caption"])["/camera/caption"]]
    stamps = [r["stamp"]["sec"] * 10**9 + r["stamp"]["nanosec"] for r in records]
    assert stamps == [recorded_bags.START_NS + i * 1_000_000_000 for i in range(3)]


def test_ros1_bag_is_converted_captioned_and_copied(captioner, tmp_path):
    written = recorded_bags.ros1_bag(tmp_path / "drive.bag")
    stats = caption_bag(tmp_path / "drive.bag", tmp_path / "out", captioner, rate_hz=0)
    assert stats.captioned == {"camera": 6} and not stats.skipped
    records = [json.loads(m.data) for _, m in _read(tmp_path / "out", ["/camera/caption"])["/camera/caption"]]
    assert [r["stamp"]["sec"] * 10**9 + r["stamp"]["nanosec"] for r in records] == [
        t for t, _ in written[recorded_bags.COMPRESSED_TOPIC]]
    assert [m.tracks for m in _mcap_decoded(tmp_path / "out")["/radar/status"]] == list(range(6))
