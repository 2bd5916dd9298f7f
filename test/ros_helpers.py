"""Helpers for the vehicle-side tests and node benchmarks: the loopback ROS environment, message builders, the caption
node as a subprocess, a probe node, and the check that a camera's counters account for every frame.

Message builders use the real sensor_msgs classes; the node runs as its own process (as `ros2 run` would start it)
and the probe is a real rclpy node in the test process. Waits poll against a deadline, never sleep a fixed time.
bench/ scripts import this module too (as test.ros_helpers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from test.support import REPO

CONFIG_YAML = REPO / "config" / "caption.yaml"
LARGE_DATA_PROFILE = REPO / "config" / "fastdds_large_data.xml"
#: Where each frame of a camera went, as /diagnostics reports it (blip_caption_ros.stats.CameraStats.COUNTERS).
CAMERA_COUNTERS = ("received", "captioned", "dropped", "bad_inputs", "failed")
POINTFIELD = {np.dtype("int8"): 1, np.dtype("uint8"): 2, np.dtype("int16"): 3, np.dtype("uint16"): 4,
              np.dtype("int32"): 5, np.dtype("uint32"): 6, np.dtype("float32"): 7, np.dtype("float64"): 8}


def loopback_ros_environment(home_prefix: str = "ros_home_", own_domain: bool = True,
                             large_data_profile: bool = False) -> None:
    """Keep DDS on this machine, in a ROS domain and ROS_HOME of this process's own; call before rclpy is imported
    (child processes inherit it). `own_domain=False` keeps a ROS_DOMAIN_ID that is already set (a harness started by
    a test joins the test's domain); `large_data_profile` points Fast DDS at config/fastdds_large_data.xml unless a
    profile is set already."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    if own_domain or "ROS_DOMAIN_ID" not in os.environ:
        # 0-101 stays below the kernel's ephemeral port range; spread concurrent runs by pid.
        os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
    os.environ["ROS_HOME"] = tempfile.mkdtemp(prefix=home_prefix)
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if large_data_profile:  # the variable the installed distro's Fast DDS reads (launch files do the same)
        from blip_caption_ros.launch_args import fastdds_profile_variable

        os.environ.setdefault(fastdds_profile_variable(), str(LARGE_DATA_PROFILE))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def counters_balance(status: dict) -> bool:
    """Whether a camera's /diagnostics values account for every frame it received (the node is idle):
    received = captioned + dropped + bad_inputs + failed. False while a counter is missing."""
    if not all(key in status for key in CAMERA_COUNTERS):
        return False
    c = {key: int(status[key]) for key in CAMERA_COUNTERS}
    return c["received"] == c["captioned"] + c["dropped"] + c["bad_inputs"] + c["failed"]


def stamp_msg(stamp_ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str):
    from std_msgs.msg import Header

    return Header(stamp=stamp_msg(stamp_ns), frame_id=frame_id)


def make_cloud(columns: dict[str, np.ndarray], frame_id="lidar", stamp_ns=0, bigendian=False, height=1,
               point_pad=0, row_pad=0, datatypes: dict[str, int] | None = None):
    """A PointCloud2 with one field per column (dtype taken from the array), packed with optional padding."""
    from sensor_msgs.msg import PointCloud2, PointField

    order = ">" if bigendian else "<"
    names = list(columns)
    count = len(next(iter(columns.values())))
    dtype = np.dtype({"names": names, "formats": [order + columns[n].dtype.str[1:] for n in names]})
    point_step = dtype.itemsize + point_pad
    dtype = np.dtype({"names": names, "formats": [dtype.fields[n][0] for n in names],
                      "offsets": [dtype.fields[n][1] for n in names], "itemsize": point_step})
    width = count // height
    points = np.zeros(count, dtype)
    for name in names:
        points[name] = columns[name]
    rows = points.view(np.uint8).reshape(height, width * point_step)
    row_step = width * point_step + row_pad
    data = np.zeros((height, row_step), np.uint8)
    data[:, : width * point_step] = rows
    fields = [PointField(name=n, offset=dtype.fields[n][1], count=1,
                         datatype=(datatypes or {}).get(n, POINTFIELD[np.dtype(columns[n].dtype)])) for n in names]
    return PointCloud2(header=header(stamp_ns, frame_id), height=height, width=width, fields=fields,
                       is_bigendian=bigendian, point_step=point_step, row_step=row_step, data=data.tobytes(),
                       is_dense=False)


def xyz(points, dtype=np.float32, **extra) -> dict[str, np.ndarray]:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    columns = {axis: points[:, i].astype(dtype) for i, axis in enumerate("xyz")}
    columns.update({name: np.asarray(values, dtype=np.float32) for name, values in extra.items()})
    return columns


def make_image(stamp_ns: int, frame_id: str, width=64, height=48, encoding="rgb8", seed=0):
    """Random pixels from `seed` (an int, or a numpy Generator whose stream it draws from)."""
    from sensor_msgs.msg import Image

    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(encoding, 2)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width * channels), dtype=np.uint8)
    return Image(header=header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                 step=width * channels, data=pixels.tobytes())


def make_compressed(stamp_ns: int, frame_id: str, fmt="jpeg", width=64, height=48, seed=0, data: bytes | None = None):
    import cv2
    from sensor_msgs.msg import CompressedImage

    if data is None:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        ok, encoded = cv2.imencode(".png" if fmt == "png" else ".jpg", pixels)
        assert ok
        data = encoded.tobytes()
    return CompressedImage(header=header(stamp_ns, frame_id), format=fmt, data=data)


class NodeProcess:
    """caption_node started with `python -m blip_caption_ros.caption_node --ros-args ...`; output in a temp file."""

    def __init__(self, *ros_args: str, params_file: Path | None = CONFIG_YAML, env: dict | None = None,
                 node_args: tuple[str, ...] = ()):
        """`node_args` go before --ros-args (`--managed`)."""
        cmd = [sys.executable, "-m", "blip_caption_ros.caption_node", *node_args, "--ros-args"]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        cmd += list(ros_args)
        fd, self.log_path = tempfile.mkstemp(prefix="caption_node_", suffix=".log")
        try:
            self.process = subprocess.Popen(
                cmd, stdout=fd, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})})
        finally:
            os.close(fd)

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (as Ctrl-C would), then the exit code; kills only if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def params_arg(name: str, value) -> list[str]:
    return ["-p", f"{name}:={value}"]


class Probe:
    """The test's own rclpy node: publishers to the caption node, subscriptions to its outputs, and waits."""

    def __init__(self, name: str = "caption_probe"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile

        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.publishers = {}
        self.received: dict[str, list] = defaultdict(list)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self._reliable = QoSProfile(depth=100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, self._reliable)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            values["level"] = str(status.level[0] if isinstance(status.level, bytes) else status.level)
            values["message"] = status.message
            self.diagnostics[status.name] = values

    def publisher(self, msg_type, topic: str):
        from rclpy.qos import qos_profile_sensor_data

        if topic not in self.publishers:
            self.publishers[topic] = self.node.create_publisher(msg_type, topic, qos_profile_sensor_data)
        return self.publishers[topic]

    def subscribe(self, msg_type, topic: str) -> list:
        self.node.create_subscription(msg_type, topic, self.received[topic].append, self._reliable)
        return self.received[topic]

    def spin_until(self, predicate, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def wait_until_connected(self, node: NodeProcess | None, inputs: dict[str, type], outputs: list[str],
                             timeout: float = 60.0) -> None:
        """Until the caption node subscribes every input and publishes every output (graph + matched endpoints)."""
        publishers = [self.publisher(msg_type, topic) for topic, msg_type in inputs.items()]

        def connected():
            if node is not None and node.process.poll() is not None:
                raise AssertionError(f"caption_node exited ({node.process.returncode}):\n{node.output()}")
            return (all(pub.get_subscription_count() > 0 for pub in publishers)
                    and all(self.node.count_publishers(topic) > 0 for topic in outputs))

        self.spin_until(connected, timeout, "caption_node to subscribe and publish")

    def publish(self, topic: str, msg) -> None:
        self.publishers[topic].publish(msg)

    def captions(self, topic: str) -> list[dict]:
        return [json.loads(msg.data) for msg in self.received[topic]]

    def caption_for(self, topic: str, stamp_ns: int, timeout: float = 20.0) -> dict:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)

        def find():
            return next((c for c in self.captions(topic) if c["stamp"] == {"sec": sec, "nanosec": nanosec}), None)

        self.spin_until(lambda: find() is not None, timeout, f"a caption on {topic} stamped {sec}.{nanosec:09d}")
        return find()

    def status(self, name: str) -> dict[str, str]:
        return self.diagnostics.get(name, {})

    def wait_status(self, name: str, predicate, timeout: float = 10.0, what: str = "") -> dict[str, str]:
        self.spin_until(lambda: bool(self.status(name)) and predicate(self.status(name)), timeout,
                        what or f"diagnostics of {name}")
        return self.status(name)

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def caption_one_frame(namespace: str, *params: str, env: dict | None = None) -> tuple[dict, np.ndarray]:
    """Start caption_node in `namespace` with `params` (e.g. "-p", "backend:=...") and `env`, send it one 64x48 rgb8
    frame on front/image and return (the caption record it publishes, the frame's RGB pixels); the node must stop
    cleanly."""
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from blip_caption_ros.imaging import image_to_rgb

    stamp = 1_700_000_000 * 1_000_000_000
    rclpy.init()
    node = NodeProcess("-r", f"__ns:=/{namespace}", *params, "-p", "cameras:=[front]", env=env)
    probe = Probe(f"{namespace}_probe")
    try:
        probe.subscribe(String, f"/{namespace}/front/caption")
        probe.wait_until_connected(node, {f"/{namespace}/front/image": Image}, [f"/{namespace}/front/caption"])
        image = make_image(stamp, "front_camera", width=64, height=48, seed=7)
        # Again every 0.5 s until captioned: matched endpoints on one side (what wait_until_connected sees) do not
        # yet mean matched on the other, and a first sample sent in between is lost.
        topic, sent = f"/{namespace}/front/caption", [0.0]

        def captioned() -> bool:
            if time.monotonic() - sent[0] > 0.5:
                probe.publish(f"/{namespace}/front/image", image)
                sent[0] = time.monotonic()
            return any(c["stamp"]["sec"] * 1_000_000_000 + c["stamp"]["nanosec"] == stamp
                       for c in probe.captions(topic))

        probe.spin_until(captioned, 60, f"a caption on {topic}")
        caption = probe.caption_for(topic, stamp)
    finally:
        probe.destroy()
        rclpy.shutdown()
        assert node.stop() == 0, node.output()
        assert "Traceback" not in node.output(), node.output()
    return caption, image_to_rgb(image.encoding, image.height, image.width, image.step, image.data)
