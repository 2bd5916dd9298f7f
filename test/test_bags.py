"""Bag I/O round trips, the synthetic drive, and bdd-to-bag (videos with and without info, stills + labels)."""

import json
import shutil
import sqlite3
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import yaml

from blip_caption_ros import bag_io
from blip_caption_ros.caption_marker import MarkerSettings
from blip_caption_ros.sensors import summarize_lidar, summarize_radar
from blip_train.datasets.synthetic import generate_dataset
from blip_train.drives import bag_messages
from blip_train.drives.bdd_to_bag import ConversionError, images_to_bag, video_to_bag
from blip_train.drives.synthetic_drive import DriveConfig, write_drive
from test import recorded_bags

STAMP = 1_700_000_123_456_789_000


def _sample_messages():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    cloud = np.zeros(5, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("velocity", "<f4"), ("rcs", "<f4")])
    cloud["x"] = np.arange(5) + 1.5
    cloud["velocity"] = -2.0
    return {
        "/cam/image": bag_messages.image_msg(rgb, STAMP, "cam"),
        "/cam/image/compressed": bag_io.compressed_msg(rgb, STAMP, "cam"),
        "/radar/points": bag_messages.pointcloud_msg(cloud, STAMP, "radar"),
        "/gps/fix": bag_messages.navsat_msg(STAMP, 37.5, -122.25, 12.0, horizontal_accuracy_m=3.0),
        "/imu/data": bag_messages.imu_msg(STAMP, (0.1, 0.2, 9.8), (0.01, 0.02, 0.03)),
        "/vehicle/twist": bag_messages.twist_msg(STAMP, 7.5),
        "/cam/caption": bag_io.string_msg('{"caption": "a car ahead"}'),
        "/cam/caption/marker": bag_io.text_marker_msg("a car ahead", STAMP, "cam", "cam",
                                                      MarkerSettings(distance_m=5.0, text_height_m=0.4,
                                                                     lifetime_s=1.5)),
    }


@pytest.mark.parametrize("storage", bag_io.STORAGES)
def test_every_message_type_round_trips_by_field(tmp_path, storage):
    sent = _sample_messages()
    with bag_io.BagWriter(tmp_path / "bag", storage=storage) as bag:
        for topic, msg in sent.items():
            bag.write(topic, STAMP, msg)
    with bag_io.BagReader(tmp_path / "bag") as reader:
        assert reader.topics == {topic: msg.__msgtype__ for topic, msg in sent.items()}
        received = {m.topic: reader.decode(m) for m in reader.messages()}
    image = received["/cam/image"]
    assert (image.height, image.width, image.encoding, image.step) == (6, 8, "rgb8", 24)
    assert np.array_equal(image.data, sent["/cam/image"].data)
    assert bag_io.stamp_of(image) == STAMP and image.header.frame_id == "cam"
    decoded = cv2.imdecode(np.asarray(received["/cam/image/compressed"].data), cv2.IMREAD_COLOR)
    assert decoded.shape == (6, 8, 3)
    radar = summarize_radar(received["/radar/points"])
    assert radar.targets == 5 and radar.nearest_m == pytest.approx(1.5) and radar.closing_speed_mps == 2.0
    fix = received["/gps/fix"]
    assert (fix.latitude, fix.longitude, fix.altitude) == (37.5, -122.25, 12.0)
    assert fix.position_covariance[0] == pytest.approx(9.0)
    imu = received["/imu/data"]
    assert imu.linear_acceleration.z == pytest.approx(9.8) and imu.orientation_covariance[0] == -1.0
    assert received["/vehicle/twist"].twist.linear.x == 7.5
    assert received["/cam/caption"].data == '{"caption": "a car ahead"}'
    marker = received["/cam/caption/marker"]
    assert marker.text == "a car ahead" and marker.type == marker.TEXT_VIEW_FACING and marker.ns == "cam"
    assert (marker.pose.position.z, marker.scale.z) == (5.0, pytest.approx(0.4))
    assert (marker.lifetime.sec, marker.lifetime.nanosec) == (1, 500_000_000)


def test_bags_decode_with_rclpy_and_the_mcap_ros2_reader(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, PointCloud2

    sent = _sample_messages()
    with bag_io.BagWriter(tmp_path / "bag") as bag:
        for topic, msg in sent.items():
            bag.write(topic, STAMP, msg)
    with bag_io.BagReader(tmp_path / "bag") as reader:
        raw = {m.topic: bytes(m.raw) for m in reader.messages()}
    image = deserialize_message(raw["/cam/image"], Image)
    assert image.width == 8 and bytes(image.data) == bytes(sent["/cam/image"].data)
    cloud = deserialize_message(raw["/radar/points"], PointCloud2)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "velocity", "rcs"]
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    with mcap_file.open("rb") as f:
        decoded = {channel.topic: msg for _, channel, _, msg in
                   make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()}
    assert decoded["/cam/caption/marker"].text == "a car ahead"
    assert decoded["/gps/fix"].latitude == 37.5


def test_missing_truncated_and_foreign_bags_name_the_file(tmp_path, drive_bag):
    with pytest.raises(bag_io.BagError, match="no such bag"):
        bag_io.BagReader(tmp_path / "nothing")
    not_a_bag = tmp_path / "notes"
    not_a_bag.mkdir()
    (not_a_bag / "readme.txt").write_text("hello")
    with pytest.raises(bag_io.BagError, match=str(not_a_bag)):
        bag_io.BagReader(not_a_bag)
    (mcap_file,) = drive_bag.glob("*.mcap")
    truncated = tmp_path / "truncated.mcap"
    truncated.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size // 2])
    with pytest.raises(bag_io.BagError, match="truncated"), bag_io.BagReader(truncated) as reader:
        list(reader.messages())
    with pytest.raises(bag_io.BagError, match="already exists"):
        bag_io.BagWriter(drive_bag)


def test_synthetic_drive_sensors_agree_with_each_other(tmp_path):
    counts = write_drive(tmp_path / "drive", DriveConfig(duration_s=2.0, width=320, height=180))
    assert counts["/front/image/compressed"] == 20 and counts["/lidar/points"] == 20
    assert counts["/radar/points"] == 40 and counts["/imu/data"] == 100 and counts["/gps/fix"] == 2
    lidar, radar = {}, {}
    with bag_io.BagReader(tmp_path / "drive") as reader:
        for m in reader.messages(["/lidar/points", "/radar/points"]):
            msg = reader.decode(m)
            (lidar if m.topic == "/lidar/points" else radar)[bag_io.stamp_of(msg)] = msg
    for stamp, cloud in lidar.items():
        nearest_radar = min(radar, key=lambda s: abs(s - stamp))
        lidar_sector = summarize_lidar(cloud).sector_nearest_m
        radar_nearest = summarize_radar(radar[nearest_radar]).nearest_m
        # The same objects seen by both sensors, 8 ms apart at <= 17 m/s relative speed.
        assert lidar_sector == pytest.approx(radar_nearest, abs=0.4)
    assert all(summarize_radar(r).closing_speed_mps > 0 for r in radar.values())


def _video(path, frames=45, fps=30, size=(320, 180)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * 5) % 255, np.uint8))
    writer.release()
    return path


INFO = {"startTime": 1503828163000, "endTime": 1503828203000,
        "gps": [{"latitude": 40.7, "longitude": -73.9, "altitude": 10.0, "speed": 5.5, "course": 90.0,
                 "timestamp": 1503828163500, "horizontal accuracy": 10.0, "vertical accuracy": 8.0}],
        "accelerometer": [{"x": 0.1, "y": -0.2, "z": 9.8, "timestamp": 1503828163100},
                          {"x": 0.3, "y": -0.1, "z": 9.7, "timestamp": 1503828163900}],
        "gyro": [{"x": 0.01, "y": 0.02, "z": 0.03, "timestamp": 1503828163110}]}


def test_video_with_info_is_on_the_video_clock(tmp_path):
    video = _video(tmp_path / "a1b2c3d4-e5f6a7b8.mov")
    (tmp_path / "a1b2c3d4-e5f6a7b8.json").write_text(json.dumps(INFO))
    counts = video_to_bag(video, tmp_path / "bag", rate_hz=10)
    assert counts == {"/front/image/compressed": 15, "/gps/fix": 1, "/vehicle/twist": 1, "/imu/data": 2}
    with bag_io.BagReader(tmp_path / "bag") as reader:
        msgs = {}
        for m in reader.messages():
            msgs.setdefault(m.topic, []).append(reader.decode(m))
    stamps = [bag_io.stamp_of(m) for m in msgs["/front/image/compressed"]]
    assert stamps[0] == INFO["startTime"] * 1_000_000 and stamps[1] - stamps[0] == 100_000_000
    assert bag_io.stamp_of(msgs["/gps/fix"][0]) == INFO["gps"][0]["timestamp"] * 1_000_000
    assert msgs["/vehicle/twist"][0].twist.linear.x == 5.5
    first_imu, second_imu = msgs["/imu/data"]
    assert first_imu.angular_velocity.z == pytest.approx(0.03)  # gyro 10 ms away: matched
    assert second_imu.angular_velocity_covariance[0] == -1.0  # nearest gyro 790 ms away: unknown


def test_video_without_info_warns_and_writes_camera_only(tmp_path):
    video = _video(tmp_path / "drive.mov", frames=6)
    with pytest.warns(UserWarning, match="camera-only"):
        counts = video_to_bag(video, tmp_path / "bag", raw=True)
    assert counts == {"/front/image": 6}
    with bag_io.BagReader(tmp_path / "bag") as reader:
        first = reader.decode(next(reader.messages()))
    assert bag_io.stamp_of(first) == 1_000_000_000 and first.encoding == "rgb8"
    (tmp_path / "empty.json").write_text("")
    with pytest.warns(UserWarning, match="empty"):
        video_to_bag(video, tmp_path / "bag2", info_path=tmp_path / "empty.json")


def test_bad_videos_and_info_files_give_clear_errors_and_leave_nothing(tmp_path):
    broken = tmp_path / "broken.mov"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(ConversionError, match="broken.mov"):
        video_to_bag(broken, tmp_path / "out")
    video = _video(tmp_path / "ok.mov", frames=3)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConversionError, match="bad.json: not valid JSON"):
        video_to_bag(video, tmp_path / "out", info_path=tmp_path / "bad.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_images_with_labels_to_bag_skips_unreadable_images(tmp_path):
    generate_dataset(tmp_path / "bdd", 4, split="val", seed=1)
    images = sorted((tmp_path / "bdd" / "images" / "100k" / "val").iterdir())
    images[1].write_bytes(b"not a jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counts = images_to_bag(tmp_path / "bdd", "val", tmp_path / "bag", rate_hz=2.0)
    assert counts == {"/front/image/compressed": 3, "/front/labels": 3}
    assert any("1 of 4 images skipped" in str(w.message) for w in caught)
    with bag_io.BagReader(tmp_path / "bag") as reader:
        labels = [json.loads(reader.decode(m).data) for m in reader.messages(["/front/labels"])]
    assert all(set(label) == {"name", "caption", "attributes"} and label["caption"] for label in labels)


def test_bdd_to_bag_cli_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "blip_train.drives.bdd_to_bag", "video", str(tmp_path / "none.mov"),
                             "--out", str(tmp_path / "bag")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "error:" in result.stderr and "none.mov" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "bag", ignore_errors=True)


# --- storages as rosbag2 writes them on Humble, Jazzy and Kilted (recorded_bags builds them from scratch) ---


def test_split_sqlite3_bag_reads_every_file_including_before_starting_time(tmp_path):
    sent = recorded_bags.split_sqlite3_bag(tmp_path / "split")
    with bag_io.BagReader(tmp_path / "split") as reader:
        assert reader.message_count == len(sent) == 120
        received = [(m.topic, m.time_ns, reader.decode(m).data) for m in reader.messages()]
    assert received == sent  # all three files, in time order, the first two before metadata's starting_time


@pytest.mark.parametrize("mode", ["file", "message"])
def test_zstd_compressed_bags_are_read(tmp_path, mode):
    import zstandard

    written = recorded_bags.driver_bag(tmp_path / "bag", storage="sqlite3", frames=4)
    (db,) = (tmp_path / "bag").glob("*.db3")
    metadata_path = tmp_path / "bag" / "metadata.yaml"
    metadata = yaml.safe_load(metadata_path.read_text())
    info = metadata["rosbag2_bagfile_information"]
    compressor = zstandard.ZstdCompressor()
    if mode == "file":
        db.with_name(db.name + ".zstd").write_bytes(compressor.compress(db.read_bytes()))
        db.unlink()
        info["relative_file_paths"] = [db.name + ".zstd"]
    else:
        with sqlite3.connect(db) as connection:
            for row_id, data in connection.execute("SELECT id, data FROM messages").fetchall():
                connection.execute("UPDATE messages SET data = ? WHERE id = ?", (compressor.compress(data), row_id))
    info.update(compression_format="zstd", compression_mode=mode.upper())
    metadata_path.write_text(yaml.safe_dump(metadata))
    with bag_io.BagReader(tmp_path / "bag") as reader:
        images = [reader.decode(m) for m in reader.messages([recorded_bags.COMPRESSED_TOPIC])]
        events = [bytes(m.raw) for m in reader.messages([recorded_bags.SERVICE_EVENT_TOPIC])]
    assert [bytes(i.data) for i in images] == [bytes(m.data) for _, m in written[recorded_bags.COMPRESSED_TOPIC]]
    assert events == [e for _, e in written[recorded_bags.SERVICE_EVENT_TOPIC]]


@pytest.mark.parametrize("storage", bag_io.STORAGES)
def test_vendor_types_and_service_events_keep_their_definitions(tmp_path, storage):
    written = recorded_bags.driver_bag(tmp_path / "bag", storage=storage, frames=3)
    with bag_io.BagReader(tmp_path / "bag") as reader:
        info = reader.topic_info
        raw = {}
        for m in reader.messages():
            raw.setdefault(m.topic, []).append(bytes(m.raw))
    assert info[recorded_bags.SERVICE_EVENT_TOPIC].definition == recorded_bags.SERVICE_EVENT_DEFINITION
    heartbeat = info["/heartbeat"]  # a type without fields: an empty definition, which is still a definition
    assert (heartbeat.definition, heartbeat.definition_encoding) == ("", "ros2msg")
    assert info["/radar/status"].msgtype == recorded_bags.VENDOR_TYPE
    assert "uint32 tracks" in info["/radar/status"].definition
    assert raw[recorded_bags.SERVICE_EVENT_TOPIC] == [e for _, e in written[recorded_bags.SERVICE_EVENT_TOPIC]]
    assert {t: len(m) for t, m in raw.items()} == {t: len(m) for t, m in written.items()}


def test_ros1_bag_is_read_as_cdr_that_rclpy_decodes(tmp_path):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage

    written = recorded_bags.ros1_bag(tmp_path / "drive.bag")
    with bag_io.BagReader(tmp_path / "drive.bag") as reader:
        assert reader.is_ros1 and reader.message_count == 12
        images = [deserialize_message(bytes(m.raw), CompressedImage)
                  for m in reader.messages([recorded_bags.COMPRESSED_TOPIC])]
        assert "int32 sec" in reader.topic_info["/radar/status"].definition  # ROS 2 form: no Header.seq
    expected = [m for _, m in written[recorded_bags.COMPRESSED_TOPIC]]
    assert [(i.header.stamp.sec, i.header.stamp.nanosec, i.header.frame_id) for i in images] == [
        (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for m in expected]
    assert [bytes(i.data) for i in images] == [bytes(m.data) for m in expected]


def test_files_that_are_not_bags_are_one_line_errors(tmp_path):
    text = tmp_path / "notes.mcap"
    text.write_text("hello")
    with pytest.raises(bag_io.BagError, match="neither a rosbag2") as error:
        bag_io.BagReader(text)
    assert "\n" not in str(error.value)
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": {
        "version": 5, "relative_file_paths": ["listed_0.db3"]}}))
    with pytest.raises(bag_io.BagError, match="missing: listed_0.db3"):
        bag_io.BagReader(listed)


@pytest.mark.parametrize("storage", bag_io.STORAGES)
def test_metadata_version_9_with_list_form_qos_is_read(tmp_path, storage):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = recorded_bags.ros2_store()
    never = QosTime(sec=0, nsec=0)
    qos = Qos(QosHistory.KEEP_LAST, 7, QosReliability.BEST_EFFORT, QosDurability.TRANSIENT_LOCAL, never, never,
              QosLiveliness.AUTOMATIC, never, False)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(tmp_path / "bag", version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection("/status", recorded_bags.VENDOR_TYPE, typestore=store, offered_qos_profiles=[qos])
        for i in range(3):
            msg = recorded_bags.vendor(store, recorded_bags.START_NS + i, i)
            writer.write(conn, recorded_bags.START_NS + i, store.serialize_cdr(msg, recorded_bags.VENDOR_TYPE))
    assert yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())[
        "rosbag2_bagfile_information"]["version"] == 9
    with bag_io.BagReader(tmp_path / "bag") as reader:
        assert len(list(reader.messages())) == 3
        offered = yaml.safe_load(reader.topic_info["/status"].offered_qos_profiles)
    assert offered[0]["depth"] == 7 and offered[0]["reliability"] in (2, "best_effort")


@pytest.mark.parametrize("storage", bag_io.STORAGES)
def test_start_and_end_are_the_first_and_last_message(tmp_path, storage):
    written = recorded_bags.driver_bag(tmp_path / "bag", storage=storage, frames=4)
    times = [t for messages in written.values() for t, _ in messages]
    with bag_io.BagReader(tmp_path / "bag") as reader:
        assert (reader.start_ns, reader.end_ns) == (min(times), max(times))
    sent = recorded_bags.split_sqlite3_bag(tmp_path / "split")
    with bag_io.BagReader(tmp_path / "split") as reader:  # metadata's starting_time is later; the files decide
        assert (reader.start_ns, reader.end_ns) == (sent[0][1], sent[-1][1])
    recorded_bags.ros1_bag(tmp_path / "drive.bag", frames=3)
    with bag_io.BagReader(tmp_path / "drive.bag") as reader:
        assert reader.end_ns - reader.start_ns == 1_000_000_000
