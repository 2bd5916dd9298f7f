"""caption_node end to end: real rclpy, real DDS, the node as its own process with a tiny random BLIP.

Two nodes run side by side in their own namespaces: /raw (sensor_msgs/Image) and /comp (CompressedImage), each with
two cameras. The probe publishes sensors first and waits (on /diagnostics) until the node has them, then publishes
the image, so every assertion on matching is deterministic. Stamps are far apart per test, so buffers never mix.
"""

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import Marker

from test.ros_helpers import (
    CAMERA_COUNTERS,
    NodeProcess,
    Probe,
    counters_balance,
    make_cloud,
    make_compressed,
    make_image,
    xyz,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

S, MS = 1_000_000_000, 1_000_000
T0 = 1_700_000_000 * S
CAMERAS = ("front", "left")
RAW, COMP = "/raw", "/comp"


def counts(status: dict, *keys: str) -> dict[str, int]:
    return {key: int(status.get(key, 0)) for key in keys}


@pytest.fixture(scope="module")
def probe(caption_model):
    import rclpy

    rclpy.init()
    common = [*caption_model.node_args, "-p", "cameras:=[front,left]", "-p", "max_new_tokens:=6"]
    nodes = [NodeProcess("-r", f"__ns:={RAW}", *common),
             NodeProcess("-r", f"__ns:={COMP}", *common, "-p", "image_transport:=compressed")]
    probe = Probe()
    try:
        outputs = []
        for ns in (RAW, COMP):
            for camera in CAMERAS:
                probe.subscribe(String, f"{ns}/{camera}/caption")
                probe.subscribe(Marker, f"{ns}/{camera}/caption/marker")
                outputs += [f"{ns}/{camera}/caption", f"{ns}/{camera}/caption/marker"]
        probe.subscribe(Image, f"{RAW}/front/caption/image")
        outputs.append(f"{RAW}/front/caption/image")
        raw_inputs = {f"{RAW}/{c}/image": Image for c in CAMERAS}
        raw_inputs.update({f"{RAW}/lidar/points": PointCloud2, f"{RAW}/radar/points": PointCloud2})
        probe.wait_until_connected(nodes[0], raw_inputs, outputs)
        probe.wait_until_connected(nodes[1], {f"{COMP}/{c}/image/compressed": CompressedImage for c in CAMERAS}, [])
        yield probe
    finally:
        probe.destroy()
        rclpy.shutdown()
        for node in nodes:
            assert node.stop() == 0, node.output()  # SIGINT ends the node cleanly
            assert "Traceback" not in node.output(), node.output()


def publish_clouds(probe: Probe, ns: str, clouds: dict[str, list]) -> None:
    """Publish clouds and wait until the node has taken them in (its diagnostics count them)."""
    node_status = f"{ns}/caption_node"
    before = {}
    probe.wait_status(node_status, lambda s: True)
    for sensor in clouds:
        before[sensor] = int(probe.status(node_status)[f"{sensor}_received"])
    for sensor, messages in clouds.items():
        for msg in messages:
            probe.publish(f"{ns}/{sensor}/points", msg)
    probe.wait_status(node_status, lambda s: all(
        int(s[f"{sensor}_received"]) >= before[sensor] + len(messages) for sensor, messages in clouds.items()),
        what=f"{ns} to receive {sum(map(len, clouds.values()))} clouds")


def test_captions_carry_the_image_header_and_the_nearest_sensors(probe, caption_model):
    t = T0
    lidar_decoy = make_cloud(xyz([(2.0, 0.0, 0.0), (0.0, 8.0, 0.0)]), "lidar_top", t - 60 * MS)
    lidar = make_cloud(xyz([(6.0, 0.0, 0.0), (0.0, -4.5, 0.0), (30.0, 2.0, 0.0), (float("nan"), 0.0, 0.0)]),
                       "lidar_top", t + 20 * MS)
    radar = make_cloud(xyz([(20.0, 0.0, 0.0), (8.0, 6.0, 0.0)], v_r=[-3.0, -9.5], rcs=[5.0, -2.0]),
                       "radar_front", t - 30 * MS)
    publish_clouds(probe, RAW, {"lidar": [lidar_decoy, lidar], "radar": [radar]})
    front, left = make_image(t, "front_optical", seed=1), make_image(t + 5 * MS, "left_optical", seed=2)
    probe.publish(f"{RAW}/front/image", front)
    probe.publish(f"{RAW}/left/image", left)

    caption = probe.caption_for(f"{RAW}/front/caption", t)
    assert caption["frame_id"] == "front_optical" and caption["camera"] == "front"
    assert isinstance(caption["caption"], str) and caption["backend"] == caption_model.backend
    assert set(caption["latency_ms"]) == {"queue", "inference", "total"}
    assert caption["lidar"] == {
        "stamp": {"sec": 1_700_000_000, "nanosec": 20 * MS}, "frame_id": "lidar_top", "offset_ms": 20.0,
        "points": 3, "nearest_m": 4.5, "sector": {"min_deg": -30.0, "max_deg": 30.0, "points": 2, "nearest_m": 6.0},
    }  # the decoy (-60 ms, 2.0 m) is within the bound but further in time: not picked
    assert caption["radar"] == {
        "stamp": {"sec": 1_699_999_999, "nanosec": 970 * MS}, "frame_id": "radar_front", "offset_ms": -30.0,
        "targets": 2, "nearest_m": 10.0, "closing_speed_mps": 9.5, "rcs_dbsm": -2.0,
    }
    left_caption = probe.caption_for(f"{RAW}/left/caption", t + 5 * MS)
    assert left_caption["frame_id"] == "left_optical"
    assert (left_caption["lidar"]["offset_ms"], left_caption["radar"]["offset_ms"]) == (15.0, -35.0)

    def same_header(msg, frame_id="front_optical"):
        return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (t // S, 0, frame_id)

    probe.spin_until(lambda: any(same_header(m) for m in probe.received[f"{RAW}/front/caption/marker"])
                     and any(same_header(m) for m in probe.received[f"{RAW}/front/caption/image"]),
                     what="marker and overlay of the front frame")
    marker = next(m for m in probe.received[f"{RAW}/front/caption/marker"] if same_header(m))
    assert marker.type == Marker.TEXT_VIEW_FACING and marker.text == caption["caption"] and marker.ns == "front"
    overlay = next(m for m in probe.received[f"{RAW}/front/caption/image"] if same_header(m))
    assert (overlay.encoding, overlay.width, overlay.height, overlay.step) == ("rgb8", 64, 48, 192)
    assert not probe.received[f"{RAW}/left/caption/image"]  # nobody subscribed: never built nor published


def test_stale_sensors_are_null(probe):
    t = T0 + 10 * S
    publish_clouds(probe, RAW, {
        "lidar": [make_cloud(xyz([(5.0, 0.0, 0.0)]), "lidar_top", t - 300 * MS)],
        "radar": [make_cloud(xyz([(9.0, 0.0, 0.0)], v_r=[-1.0]), "radar_front", t + 250 * MS)],
    })
    probe.publish(f"{RAW}/front/image", make_image(t, "front_optical"))
    caption = probe.caption_for(f"{RAW}/front/caption", t)
    assert caption["lidar"] is None and caption["radar"] is None


def test_time_going_backwards_resets_the_sensor_buffer(probe):
    t = T0 - 100 * S  # a bag starting over
    resets = int(probe.status(f"{RAW}/caption_node")["lidar_time_resets"])
    publish_clouds(probe, RAW, {"lidar": [make_cloud(xyz([(7.0, 0.0, 0.0)]), "lidar_top", t + 10 * MS)]})
    assert int(probe.status(f"{RAW}/caption_node")["lidar_time_resets"]) == resets + 1
    probe.publish(f"{RAW}/front/image", make_image(t, "front_optical"))
    caption = probe.caption_for(f"{RAW}/front/caption", t)
    assert (caption["lidar"]["offset_ms"], caption["lidar"]["nearest_m"]) == (10.0, 7.0)


def test_compressed_jpeg_and_png_frames(probe):
    t = T0 + 20 * S
    probe.publish(f"{COMP}/front/image/compressed", make_compressed(t, "front_optical", "jpeg", 320, 240))
    probe.publish(f"{COMP}/left/image/compressed", make_compressed(t + MS, "left_optical", "png"))
    front = probe.caption_for(f"{COMP}/front/caption", t)
    left = probe.caption_for(f"{COMP}/left/caption", t + MS)
    assert (front["frame_id"], left["frame_id"]) == ("front_optical", "left_optical")
    assert front["lidar"] is None and front["radar"] is None  # nothing published on /comp/lidar, /comp/radar


def test_bad_inputs_are_counted_and_survived(probe):
    t = T0 + 30 * S
    raw_front, comp_front, raw_node = f"{RAW}/caption_node: front", f"{COMP}/caption_node: front", f"{RAW}/caption_node"
    bad_before = {name: int(probe.status(name).get("bad_inputs", 0)) for name in (raw_front, comp_front)}
    probe.publish(f"{RAW}/front/image", make_image(t, "front_optical", encoding="32FC1"))
    probe.publish(f"{COMP}/front/image/compressed", make_compressed(t, "front_optical", data=b"\xff\xd8 broken"))
    for name in (raw_front, comp_front):
        status = probe.wait_status(name, lambda s, name=name: int(s["bad_inputs"]) == bad_before[name] + 1,
                                   what=f"{name} to count the bad frame")
        assert int(status["level"]) == 1  # WARN while bad frames arrive

    lidar_bad = int(probe.status(raw_node)["lidar_bad_inputs"])
    radar_bad = int(probe.status(raw_node)["radar_bad_inputs"])
    publish_clouds(probe, RAW, {
        "lidar": [make_cloud(xyz([(float("nan"),) * 3] * 4), "lidar_top", t - 5 * MS),
                  make_cloud(xyz(np.empty((0, 3))), "lidar_top", t - 4 * MS),
                  make_cloud({"x": np.ones(3, np.uint8), "y": np.ones(3, np.float32), "z": np.ones(3, np.float32)},
                             "lidar_top", t - 3 * MS),
                  make_cloud(xyz([(3.0, 4.0, 0.0)]), "lidar_top", t + 40 * MS)],
        "radar": [make_cloud({"range": np.ones(2, np.float32)}, "radar_front", t - 2 * MS)],
    })
    status = probe.wait_status(raw_node, lambda s: int(s["lidar_bad_inputs"]) == lidar_bad + 3
                               and int(s["radar_bad_inputs"]) == radar_bad + 1, what="bad clouds counted")
    assert int(status["level"]) == 1

    probe.publish(f"{RAW}/front/image", make_image(t + MS, "front_optical"))
    probe.publish(f"{COMP}/front/image/compressed", make_compressed(t + MS, "front_optical"))
    caption = probe.caption_for(f"{RAW}/front/caption", t + MS)
    assert caption["lidar"]["nearest_m"] == 5.0  # the bad clouds, though nearer in time, were skipped
    assert caption["radar"] is None
    probe.caption_for(f"{COMP}/front/caption", t + MS)


def test_burst_every_frame_is_captioned_or_dropped(probe):
    t = T0 + 40 * S
    name = f"{RAW}/caption_node: left"
    probe.wait_status(name, counters_balance, what="an idle node")
    keys = CAMERA_COUNTERS
    before = counts(probe.status(name), *keys)
    frames = [make_image(t + i * MS, "left_optical", seed=i) for i in range(30)]
    for frame in frames:
        probe.publish(f"{RAW}/left/image", frame)

    def burst_captions():
        return [c for c in probe.captions(f"{RAW}/left/caption") if c["stamp"]["sec"] == t // S]

    def drained(status):
        now = counts(status, *keys)
        delta = {key: now[key] - before[key] for key in keys}
        return delta["received"] > 0 and counters_balance(status) and delta["captioned"] == len(burst_captions())

    status = probe.wait_status(name, drained, timeout=30, what="the burst to drain")
    delta = {key: int(status[key]) - before[key] for key in keys}
    assert delta["received"] == delta["captioned"] + delta["dropped"]
    assert delta["bad_inputs"] == delta["failed"] == 0
    assert 0 < delta["received"] <= 30 and delta["dropped"] >= 1  # ~40 ms per caption vs a burst of ~1 ms frames
    if delta["received"] == len(frames):  # none lost on the way (best effort): the newest is always captioned
        assert max(c["stamp"]["nanosec"] for c in burst_captions()) == frames[-1].header.stamp.nanosec


def test_prompt_is_a_runtime_parameter_and_the_rest_are_read_only(probe):
    def call(service_type, service, request):
        client = probe.node.create_client(service_type, service)
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(request)
        probe.spin_until(future.done, what=service)
        probe.node.destroy_client(client)
        return future.result()

    def string_param(name, value):
        return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))

    node = f"{RAW}/caption_node"
    result = call(SetParameters, f"{node}/set_parameters",
                  SetParameters.Request(parameters=[string_param("prompt", "a photo of"),
                                                    string_param("model", "/elsewhere")]))
    assert result.results[0].successful
    assert not result.results[1].successful and "read-only" in result.results[1].reason
    values = call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=["prompt", "model"])).values
    assert values[0].string_value == "a photo of" and values[1].string_value != "/elsewhere"

    t = T0 + 50 * S
    probe.publish(f"{RAW}/front/image", make_image(t, "front_optical"))
    assert isinstance(probe.caption_for(f"{RAW}/front/caption", t)["caption"], str)
