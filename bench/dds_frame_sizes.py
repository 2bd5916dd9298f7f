"""Which raw frame sizes arrive over Fast DDS with the shipped large-data profile (bag-replay's LARGE_MESSAGE_BYTES).

A publisher as bag-replay makes it (reliable, keep-last 10) in this process and a subscriber as caption_node makes it
(sensor-data QoS) in a child process, both with config/fastdds_large_data.xml, on loopback. Per size, `--frames` raw
rgb8 frames at `--hz`; the subscriber counts what arrives.

    .venv/bin/python -m bench.dds_frame_sizes [--sizes-mib 2.6,6.2,12,16,20,24,32,48] [--frames 30] [--hz 10]

Prints "size: arrived/sent" per size; not a test (losses depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.node_harness import REPO  # noqa: F401  (puts test/ on the path: the tests' ROS environment)
from test.ros_helpers import loopback_ros_environment

TOPIC = "/frame_size_test"


def subscribe_and_count(done_flag: Path) -> None:
    """Child process: count frames per size (header.frame_id) until the parent creates `done_flag`, then print."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("frame_size_counter")
    counts: dict[str, int] = {}
    node.create_subscription(Image, TOPIC, lambda m: counts.__setitem__(m.header.frame_id,
                                                                        counts.get(m.header.frame_id, 0) + 1),
                             qos_profile_sensor_data)
    drain_until = None
    while drain_until is None or time.monotonic() < drain_until:
        rclpy.spin_once(node, timeout_sec=0.1)
        if drain_until is None and done_flag.exists():
            drain_until = time.monotonic() + 3.0
    print(json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def publish(sizes_mib: list[float], frames: int, hz: float) -> dict[str, int]:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    done_flag = Path(tempfile.mkdtemp(prefix="dds_frame_sizes_")) / "done"
    counter = subprocess.Popen([sys.executable, "-m", __spec__.name, "--count", str(done_flag)], stdout=subprocess.PIPE,
                               text=True)
    rclpy.init()
    node = rclpy.create_node("frame_size_publisher")
    publisher = node.create_publisher(Image, TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    while publisher.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(1.0)
    labels = []
    for mib in sizes_mib:
        width = 4000
        height = int(mib * 2**20 / (width * 3))
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        msg.data = bytes(height * width * 3)
        msg.header.frame_id = f"{height * width * 3 / 2**20:.1f} MiB"
        labels.append(msg.header.frame_id)
        start = time.monotonic()
        for i in range(frames):
            while time.monotonic() < start + i / hz:
                time.sleep(0.001)
            publisher.publish(msg)
        time.sleep(1.0)
    done_flag.touch()
    arrived = json.loads(counter.communicate(timeout=60)[0])
    node.destroy_node()
    rclpy.shutdown()
    return {label: arrived.get(label, 0) for label in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", default="2.6,6.2,12,16,20,24,32,48")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--count", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.count is not None:
        subscribe_and_count(args.count)
        return
    loopback_ros_environment("dds_frame_sizes_ros_home_", large_data_profile=True)
    for label, n in publish([float(s) for s in args.sizes_mib.split(",")], args.frames, args.hz).items():
        print(f"{label}: {n}/{args.frames} arrived")


if __name__ == "__main__":
    main()
