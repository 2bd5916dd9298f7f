"""Faults on a vehicle: corrupt weights, a camera that goes silent, a sensor that stops."""

import shutil
import time

import pytest
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String

from test.ros_helpers import NodeProcess, Probe, make_cloud, make_image, xyz

pytestmark = pytest.mark.ros
S, MS = 1_000_000_000, 1_000_000
STALE = "3"


@pytest.mark.slow
def test_corrupt_weights_end_the_node_with_one_line(tmp_path, caption_model):
    model = tmp_path / "model"
    shutil.copytree(caption_model.path, model)
    weights = model / caption_model.weights
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    node = NodeProcess("-p", f"model:={model}", "-p", f"backend:={caption_model.backend}")
    assert node.wait(timeout=60) == 1
    fatal = [line for line in node.output().splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1 and str(model) in fatal[0], node.output()
    assert "Traceback" not in node.output()


@pytest.mark.slow
def test_silent_camera_goes_stale_while_the_other_continues_and_stopped_sensors_become_null(caption_model):
    import rclpy

    rclpy.init()
    node = NodeProcess(*caption_model.node_args, "-p", "cameras:=[front,left]", "-p", "max_new_tokens:=4",
                       "-p", "stale_timeout_s:=1.5", "-p", "radar_topic:=''")
    probe = Probe("faults_probe")
    try:
        probe.subscribe(String, "front/caption")
        left = probe.subscribe(String, "left/caption")
        probe.wait_until_connected(node, {"front/image": Image, "left/image": Image, "lidar/points": PointCloud2},
                                   ["front/caption", "left/caption"])
        t = 1_700_000_000 * S
        for i in range(3):  # both cameras and the LiDAR alive
            stamp = t + i * 100 * MS
            sent = [0.0]

            def captioned(stamp=stamp, sent=sent) -> bool:
                # again every 0.5 s: a first sample can be lost while discovery finishes on the node's side
                if time.monotonic() - sent[0] > 0.5:
                    probe.publish("lidar/points", make_cloud(xyz([(7.0, 0.0, 0.0)]), "lidar", stamp))
                    probe.publish("front/image", make_image(stamp, "front"))
                    probe.publish("left/image", make_image(stamp, "left"))
                    sent[0] = time.monotonic()
                return all(any(c["stamp"]["sec"] * S + c["stamp"]["nanosec"] == stamp for c in probe.captions(topic))
                           for topic in ("front/caption", "left/caption"))

            probe.spin_until(captioned, 20, f"captions of both cameras at {stamp}")
        assert probe.captions("front/caption")[-1]["lidar"]["nearest_m"] == 7.0
        # The left camera and the LiDAR stop; the front camera goes on for longer than stale_timeout_s.
        left_before = len(left)

        def left_stale() -> bool:
            return probe.status("/caption_node: left").get("level") == STALE

        i = 3
        while not left_stale():
            assert i < 200, "the silent left camera never went STALE"
            stamp = t + i * 100 * MS
            probe.publish("front/image", make_image(stamp, "front"))
            probe.caption_for("front/caption", stamp)
            deadline = time.monotonic() + 0.1
            probe.spin_until(lambda d=deadline: time.monotonic() > d, 1, "a camera period")
            i += 1
        assert "no frame for" in probe.status("/caption_node: left")["message"]
        assert probe.status("/caption_node: front")["level"] != STALE  # the other camera goes on
        assert len(left) == left_before  # nothing stale was published for it
        last = probe.captions("front/caption")[-1]
        assert last["lidar"] is None  # the LiDAR stopped 2 s earlier: null, never its last (stale) sweep
        node_status = probe.wait_status("/caption_node", lambda s: "lidar silent" in s["message"], timeout=10,
                                        what="the node status to report the silent LiDAR")
        assert node_status["level"] != "0"
    finally:
        probe.destroy()
        rclpy.shutdown()
        assert node.stop() == 0, node.output()
