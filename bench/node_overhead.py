"""What caption_node costs beyond the model, and what the full-size model costs on this CPU.

1. Node overhead: two cameras publish 1280x720 rgb8 at 30 Hz (plus a 10 Hz LiDAR and a 20 Hz radar) from a
   separate process, over Fast DDS with the large-data profile. caption_node runs in this process with a stand-in
   captioner that returns at once, so "receipt -> publish minus inference" is what the node itself adds:
   hand-off to the worker, decoding, sensor matching, the JSON, the marker and the publish calls. The front
   camera's overlay has a subscriber (so it is drawn and published); the left one has none.
2. Full-size BLIP-base (random weights, built from config; the cost is that of the real architecture): seconds
   per caption, captions/s and resident memory, in a fresh process.

    .venv/bin/python -m bench.node_overhead [--duration 10] [--base-captions 3] [--skip-base]

Prints the figures; not a test (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.node_harness import REPO  # noqa: F401  (puts test/ on the path: the tests' environment and message builders)
from test.ros_helpers import LARGE_DATA_PROFILE, loopback_ros_environment, make_cloud, make_image

CAMERAS = ("front", "left")


def ros_environment(fastdds_profile: bool = True) -> None:
    """Loopback DDS as the tests have it; with or without the large-data profile (--no-fastdds-profile)."""
    loopback_ros_environment("node_overhead_ros_home_", own_domain=False, large_data_profile=fastdds_profile)
    if not fastdds_profile:
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)


def percentiles(values) -> str:
    if not values:
        return "n/a"
    p50, p95 = np.percentile(values, [50, 95])
    return f"p50 {p50:.2f} ms, p95 {p95:.2f} ms (n={len(values)})"


# --- the camera/LiDAR/radar publisher (its own process) ---------------------------------------------------------

def run_publisher(args) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    images = {camera: (node.create_publisher(Image, f"{camera}/image", qos_profile_sensor_data),
                       make_image(0, f"{camera}_optical", args.width, args.height, seed=0)) for camera in CAMERAS}
    overlay_seen = []
    node.create_subscription(Image, "front/caption/image", lambda m: overlay_seen.append(1), 1)

    def cloud(n, frame_id, extra=()):
        names = ("x", "y", "z", *extra)
        points = np.random.default_rng(1).uniform(-50, 50, (n, len(names))).astype(np.float32)
        return make_cloud({name: points[:, i] for i, name in enumerate(names)}, frame_id)

    lidar = (node.create_publisher(PointCloud2, "lidar/points", qos_profile_sensor_data), cloud(32_768, "lidar"))
    radar = (node.create_publisher(PointCloud2, "radar/points", qos_profile_sensor_data),
             cloud(64, "radar", ("v_r", "rcs")))
    deadline = time.monotonic() + 60
    while any(pub.get_subscription_count() == 0 for pub, _ in (*images.values(), lidar, radar)):
        rclpy.spin_once(node, timeout_sec=0.05)
        if time.monotonic() > deadline:
            sys.exit("bench publisher: caption_node never subscribed")
    period, sent, start = 1.0 / args.rate, 0, time.monotonic()
    while time.monotonic() - start < args.duration:
        now = node.get_clock().now().to_msg()
        for pub, msg in images.values():
            msg.header.stamp = now
            pub.publish(msg)
        for every, (pub, msg) in ((3, lidar), (1, radar)):  # 10 Hz LiDAR, 30 Hz radar
            if sent % every == 0:
                msg.header.stamp = now
                pub.publish(msg)
        sent += 1
        next_time = start + sent * period
        while time.monotonic() < next_time:
            rclpy.spin_once(node, timeout_sec=max(0.0, next_time - time.monotonic()))
    print(json.dumps({"frames_per_camera": sent, "overlays_received": len(overlay_seen)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# --- the node, in this process, with a stand-in captioner --------------------------------------------------------

class InstantCaptioner:
    """Returns at once: isolates what the node adds around the model."""

    backend, model_name = "instant", "instant"

    def __init__(self, config):
        self.config = config

    def caption(self, images, prompt=None):
        return ["a car driving down a street next to a tall building"] * len(images)


def run_node_overhead(args) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from blip_caption_ros.backends import register_backend
    from blip_caption_ros.node import CaptionNode

    register_backend("instant", InstantCaptioner)
    rclpy.init()
    node = CaptionNode(parameter_overrides=[
        Parameter("backend", value="instant"), Parameter("model", value="instant"),
        Parameter("cameras", value=list(CAMERAS))])
    overhead, queue, overlay = ({camera: [] for camera in CAMERAS} for _ in range(3))
    batch_publish = node.worker.publish
    in_flight = {}

    def timed_batch(results):  # wraps the node's publish of one batch
        in_flight.update({result.frame.camera: result for result in results})
        batch_publish(results)
        end = time.monotonic_ns()
        for result in results:
            if result.frame.camera == "front":
                overlay["front"].append((end - result.frame.received_ns) / 1e6
                                        - result.record["latency_ms"]["inference"])

    def timed_caption(camera, publish):  # wraps each camera's caption publisher
        def wrapper(msg):
            publish(msg)
            result = in_flight.pop(camera)
            latency = result.record["latency_ms"]
            overhead[camera].append((time.monotonic_ns() - result.frame.received_ns) / 1e6 - latency["inference"])
            queue[camera].append(latency["queue"])
        return wrapper

    for camera in CAMERAS:
        caption_pub = node.outputs[camera][0]
        caption_pub.publish = timed_caption(camera, caption_pub.publish)
    node.worker.publish = timed_batch
    publisher = subprocess.Popen(
        [sys.executable, "-m", __spec__.name, "--publisher", "--duration", str(args.duration), "--rate", str(args.rate),
         "--width", str(args.width), "--height", str(args.height)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, text=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while publisher.poll() is None:
        executor.spin_once(timeout_sec=0.1)
    sent = json.loads(publisher.stdout.read().strip().splitlines()[-1])
    executor.spin_once(timeout_sec=0.5)
    counts = {camera: node.slots.stats[camera].snapshot() for camera in CAMERAS}
    node.destroy_node()
    rclpy.try_shutdown()
    for samples in overhead.values():  # the first frames include discovery and warm-up
        del samples[: min(10, len(samples) // 10)]
    return {"sent": sent, "counts": counts, "overhead": overhead, "queue": queue, "overlay": overlay}


# --- full-size BLIP-base on the CPU (a fresh process) ----------------------------------------------------------

def run_blip_base(args) -> None:
    import torch

    from blip_caption_ros.backends import CaptionerConfig, load_captioner

    start = time.perf_counter()
    captioner = load_captioner(CaptionerConfig(model=args.blip_base_worker, prompt="a picture of",
                                               max_new_tokens=20, precision=args.precision))
    load_s = time.perf_counter() - start
    images = [np.random.default_rng(i).integers(0, 256, (720, 1280, 3), dtype=np.uint8) for i in range(2)]
    captioner.caption(images[:1])  # warm-up
    single = []
    for _ in range(args.base_captions):
        start = time.perf_counter()
        caption = captioner.caption(images[:1])[0]
        single.append(time.perf_counter() - start)
    start = time.perf_counter()
    captioner.caption(images)
    batch_s = time.perf_counter() - start
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    tokens = len(captioner.processor.tokenizer(caption, add_special_tokens=False).input_ids)
    print(json.dumps({
        "threads": torch.get_num_threads(), "load_s": load_s, "single_s": single, "batch2_s": batch_s,
        "tokens_last_caption": tokens, "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
    }), flush=True)


def blip_base(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="blip_base_") as model_dir:
        start = time.perf_counter()
        build = subprocess.run(
            [sys.executable, "-c", "import sys; from blip_train.modeling import build_blip, BLIP_BASE; "
             "build_blip(['a', 'picture', 'of', 'car', 'road', 'street'], sys.argv[1], arch=BLIP_BASE)", model_dir],
            capture_output=True, text=True)
        if build.returncode:
            raise SystemExit(f"building BLIP-base failed:\n{build.stderr}")
        build_s = time.perf_counter() - start
        runs = {}
        for precision in ("fp32", "bf16"):
            env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}
            result = subprocess.run([sys.executable, "-m", __spec__.name, "--blip-base-worker", model_dir,
                                     "--precision", precision, "--base-captions", str(args.base_captions)],
                                    capture_output=True, text=True, env=env)
            if result.returncode:
                raise SystemExit(f"BLIP-base run failed:\n{result.stderr}")
            runs[precision] = json.loads(result.stdout.strip().splitlines()[-1])
        return {"build_s": build_s, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of 30 Hz traffic")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--base-captions", type=int, default=3, help="timed BLIP-base captions (after a warm-up)")
    parser.add_argument("--skip-base", action="store_true", help="skip the full-size BLIP-base part")
    parser.add_argument("--no-fastdds-profile", action="store_true",
                        help="use Fast DDS's default transports (to see the loss the profile avoids)")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--blip-base-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        return run_publisher(args)
    if args.blip_base_worker:
        return run_blip_base(args)
    ros_environment(not args.no_fastdds_profile)  # the publisher and BLIP-base processes inherit it

    profile = "default transports" if args.no_fastdds_profile else f"profile {LARGE_DATA_PROFILE.name}"
    print(f"node overhead: {len(CAMERAS)} cameras x {args.width}x{args.height} rgb8 at {args.rate:g} Hz, "
          f"{args.duration:g} s, Fast DDS {profile}")
    result = run_node_overhead(args)
    sent = result["sent"]["frames_per_camera"]
    for camera in CAMERAS:
        c = result["counts"][camera]
        overlay = "overlay subscribed" if camera == "front" else "no overlay subscriber"
        print(f"  {camera:5s} ({overlay}): sent {sent}, received {c['received']} "
              f"({100 * (1 - c['received'] / max(sent, 1)):.1f} % lost in transport), captioned {c['captioned']}, "
              f"dropped {c['dropped']}")
        print(f"        receipt -> caption published, minus inference: {percentiles(result['overhead'][camera])}")
        print(f"        of which waiting for the worker thread:        {percentiles(result['queue'][camera])}")
    print(f"  front overlay drawn and published (receipt -> done, minus inference): "
          f"{percentiles(result['overlay']['front'])}")
    if args.skip_base:
        return None
    print(f"full-size BLIP-base (random weights, 224M params) on the CPU, {args.base_captions} timed captions "
          "after a warm-up, 1280x720 input, prompt 'a picture of', max_new_tokens 20 ...")
    figures = blip_base(args)
    print(f"  build+save {figures['build_s']:.0f} s")
    for precision, run in figures["runs"].items():
        single, runs = run["single_s"], ", ".join(f"{x:.2f}" for x in run["single_s"])
        print(f"  {precision}, {run['threads']} threads: load {run['load_s']:.1f} s; 1 camera "
              f"{np.median(single):.2f} s per caption, median ({1 / np.median(single):.2f} captions/s; runs {runs} s, "
              f"{run['tokens_last_caption']} tokens); 2 cameras {run['batch2_s']:.2f} s per batch "
              f"({2 / run['batch2_s']:.2f} captions/s); RSS {run['rss_mb']:.0f} MB, peak {run['peak_rss_mb']:.0f} MB")
    return None


if __name__ == "__main__":
    main()
