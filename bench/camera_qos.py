"""How many camera frames reach the caption node's image subscription, by driver QoS, node QoS and image size.

A "driver" process publishes raw rgb8 (or JPEG CompressedImage) frames at a fixed rate, with or without the Fast DDS
large-data profile (config/fastdds_large_data.xml) and with a reliable or best-effort publisher; a "node" process
subscribes the way caption_node does (its default image QoS, or best-effort / reliable as a QoS override would make
it), always with the large-data profile as `caption.launch.py` starts it, and counts frames received and the frames
DDS reports lost. Each cell runs a few seconds; the table is Markdown.

    python -m bench.camera_qos                          # the whole matrix (~7 minutes on 2 cores)
    python -m bench.camera_qos --sizes 720p --rates 10 --seconds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def _qos(reliability: str, depth: int = 5):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=getattr(ReliabilityPolicy, reliability.upper()))


def drive(args) -> None:
    """Publish frames for `seconds` after the node's subscription matched; print how many were published."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("qos_bench_driver")
    width, height = SIZES[args.size]
    compressed = args.size.endswith("jpeg")
    msg_type = CompressedImage if compressed else Image
    pub = node.create_publisher(msg_type, "camera/image_raw", _qos(args.pub))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width * 3), dtype=np.uint8).tobytes()
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # discovery of the reader's locators settles
    period = 1.0 / args.rate
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < args.seconds:
        stamp = node.get_clock().now().to_msg()
        if compressed:
            msg = CompressedImage(format="jpeg", data=args.jpeg)
        else:
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels)
        msg.header.stamp = stamp
        msg.header.frame_id = str(sent)
        pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent * period - time.monotonic()))
    time.sleep(1.0)  # late samples, retransmissions
    print(json.dumps({"published": sent}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def listen(args) -> None:
    """Subscribe like caption_node (or with an overridden reliability) until stdin closes; print the counts."""
    import threading

    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("qos_bench_node")
    counts = {"received": 0, "lost": 0, "incompatible": 0}
    msg_type = CompressedImage if args.size.endswith("jpeg") else Image

    def received(msg):
        counts["received"] += 1

    def lost(change):
        counts["lost"] += change

    def incompatible(change):
        counts["incompatible"] += change

    topic = None
    if args.sub == "node-default":  # the node's own input subscription (follows the publishers' reliability)
        from blip_caption_ros.node import InputTopic

        topic = InputTopic(node, msg_type, "camera/image_raw", received, lost=lost, incompatible=incompatible)
    else:
        events = SubscriptionEventCallbacks(message_lost=lambda e: lost(e.total_count_change),
                                            incompatible_qos=lambda e: incompatible(e.total_count_change))
        node.create_subscription(msg_type, "camera/image_raw", received, _qos(args.sub), event_callbacks=events)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    next_refresh = time.monotonic() + 1.0
    while not done.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
        if topic is not None and time.monotonic() >= next_refresh:  # the node does this on its diagnostics timer
            topic.refresh()
            next_refresh = time.monotonic() + 1.0
    counts["reliability"] = topic.reliability if topic is not None else args.sub
    print(json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def cell(size: str, rate: float, driver_profile: bool, pub: str, sub: str, seconds: float) -> dict:
    from blip_caption_ros.launch_args import fastdds_profile_variable

    variable = fastdds_profile_variable()
    profile = str(REPO / "config" / "fastdds_large_data.xml")
    base = {k: v for k, v in os.environ.items() if k not in ("FASTDDS_DEFAULT_PROFILES_FILE",
                                                             "FASTRTPS_DEFAULT_PROFILES_FILE")}
    common = ["--size", size, "--rate", str(rate), "--seconds", str(seconds), "--pub", pub, "--sub", sub]
    listener = subprocess.Popen([sys.executable, "-m", "bench.camera_qos", "listen", *common], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=REPO, env={**base, variable: profile})
    driver_env = {**base, variable: profile} if driver_profile else base
    driver = subprocess.run([sys.executable, "-m", "bench.camera_qos", "drive", *common], capture_output=True,
                            text=True, cwd=REPO, env=driver_env, timeout=seconds + 60)
    out, _ = listener.communicate("", timeout=30)
    result = {"size": size, "rate": rate, "driver_profile": driver_profile, "pub": pub, "sub": sub}
    result.update(json.loads(driver.stdout.strip().splitlines()[-1]) if driver.returncode == 0 else {"published": 0})
    result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="matrix", choices=("matrix", "drive", "listen"))
    parser.add_argument("--size", default="720p")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--pub", default="reliable")
    parser.add_argument("--sub", default="node-default")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sizes", default="720p,1080p,720p-jpeg")
    parser.add_argument("--rates", default="10,30")
    parser.add_argument("--subs", default="node-default,best_effort,reliable")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(70 + os.getpid() % 10))
    if args.role == "drive":
        import cv2
        import numpy as np

        if args.size.endswith("jpeg"):
            width, height = SIZES[args.size.partition("-")[0]]
            image = np.random.default_rng(0).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)  # smooth: a camera-like size
            args.jpeg = cv2.imencode(".jpg", image)[1].tobytes()
            SIZES[args.size] = (width, height)
        return drive(args)
    if args.role == "listen":
        if args.size.endswith("jpeg"):
            SIZES[args.size] = SIZES[args.size.partition("-")[0]]
        return listen(args)
    results = []
    print("| image | Hz | driver profile | driver QoS | node subscription | received / published | lost (DDS) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size, rate, driver_profile, pub, sub in itertools.product(
            args.sizes.split(","), [float(r) for r in args.rates.split(",")], (False, True),
            ("reliable", "best_effort"), args.subs.split(",")):
        if sub == "reliable" and pub == "best_effort":
            continue  # never matches (an incompatible-QoS event); the node's default handles this case
        r = cell(size, rate, driver_profile, pub, sub, args.seconds)
        results.append(r)
        shown = f"default (→ {r['reliability']})" if sub == "node-default" else sub
        print(f"| {size} | {rate:g} | {'yes' if driver_profile else 'no'} | {pub} | {shown} | "
              f"{r['received']} / {r['published']} | {r['lost']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
