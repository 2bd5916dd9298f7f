"""caption_node end to end with the raw encodings of real vehicle cameras: a Bayer (GMSL) and a YUYV (usb_cam)
camera captioned by the real node over real DDS, each caption identical to that of the same pixels sent as rgb8."""

import json

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String

from blip_caption_ros.imaging import image_to_rgb
from test.ros_helpers import NodeProcess, Probe, header

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/enc"
CAMERAS = ("gmsl", "usb", "reference")
S = 1_000_000_000
T0 = 1_750_000_000 * S
ENCODINGS = ("bayer_rggb8", "bayer_grbg16", "yuyv", "yuv422")


def _frame(stamp_ns: int, camera: str, encoding: str, pixels: np.ndarray, step: int) -> Image:
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.zeros((rows.shape[0], step), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(header=header(stamp_ns, f"{camera}_optical"), height=pixels.shape[0], width=pixels.shape[1],
                 encoding=encoding, step=step, data=padded.tobytes())


@pytest.fixture(scope="module")
def probe(caption_model):
    import rclpy

    rclpy.init()
    node = NodeProcess("-r", f"__ns:={NS}", *caption_model.node_args, "-p", f"cameras:=[{','.join(CAMERAS)}]",
                       "-p", "max_new_tokens:=6", "-p", "overlay:=false")
    probe = Probe("encodings_probe")
    try:
        for camera in CAMERAS:
            probe.subscribe(String, f"{NS}/{camera}/caption")
        probe.wait_until_connected(node, {f"{NS}/{c}/image": Image for c in CAMERAS},
                                   [f"{NS}/{c}/caption" for c in CAMERAS])
        yield probe
    finally:
        probe.destroy()
        rclpy.shutdown()
        assert node.stop() == 0, node.output()
        assert "Traceback" not in node.output(), node.output()


def _caption(probe: Probe, camera: str, msg: Image) -> dict:
    """Publish `msg` (best effort, as a camera does) until its caption comes back; a camera streams, so a frame
    lost before the endpoints matched is simply sent again with the same stamp."""
    topic, stamp = f"{NS}/{camera}/caption", msg.header.stamp

    def find():
        for caption in map(json.loads, (m.data for m in probe.received[topic])):
            if caption["stamp"] == {"sec": stamp.sec, "nanosec": stamp.nanosec}:
                return caption
        return None

    for _ in range(40):
        probe.publish(f"{NS}/{camera}/image", msg)
        try:
            probe.spin_until(lambda: find() is not None, 0.5, topic)
            return find()
        except AssertionError:
            continue
    raise AssertionError(f"no caption on {topic} for the {msg.encoding} frame")


@pytest.mark.parametrize(("camera", "encoding", "shape", "dtype", "pad"), [
    ("gmsl", "bayer_rggb8", (48, 64), np.uint8, 0),
    ("gmsl", "bayer_grbg16", (48, 64), np.uint16, 8),
    ("usb", "yuyv", (48, 64, 2), np.uint8, 0),
    ("usb", "yuv422", (48, 64, 2), np.uint8, 16),
])
def test_camera_encodings_are_captioned_like_their_rgb_pixels(probe, camera, encoding, shape, dtype, pad):
    index = ENCODINGS.index(encoding)
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    step = shape[1] * (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize + pad
    stamp = T0 + S * (1 + index)
    msg = _frame(stamp, camera, encoding, pixels, step)
    rgb = image_to_rgb(encoding, msg.height, msg.width, msg.step, msg.data)
    reference = _frame(stamp, "reference", "rgb8", rgb, rgb.shape[1] * 3)

    captioned = _caption(probe, camera, msg)
    expected = _caption(probe, "reference", reference)
    assert captioned["frame_id"] == f"{camera}_optical" and captioned["camera"] == camera
    assert captioned["caption"] == expected["caption"]
    status = probe.status(f"{NS}/caption_node: {camera}")
    assert int(status.get("bad_inputs", 0)) == 0, status
