"""Overload soak: cameras far faster than the model, for minutes; the node must not build a backlog or leak.

A publisher process sends `--cameras` cameras of `--width`x`--height` rgb8 at `--hz`, a 10 Hz LiDAR and a 20 Hz
radar into one caption_node for `--duration` seconds, over Fast DDS with the large-data profile. The model is
whatever `--model` is (default: BLIP-base built from config with random weights, ~0.3-0.5 batches/s on 2 CPU
cores: the real cost of the architecture). Checks, at the end:

- the node is alive and exits cleanly on SIGINT;
- drops are counted exactly: per camera, received = captioned + dropped (+ bad + failed, both 0);
- no backlog: caption latency (receipt -> publish) stays within two inference periods (p95; the queue wait is at
  most one period, then the inference itself), and does not grow from the first to the last quarter of the run;
- memory: node RSS grows less than `--max-rss-growth-mb` after warm-up (the first fifth of the run). RSS is sampled
  every 5 s and swings by ~100 MB with each inference of a full-size model (activations allocated and freed), so a
  single sample says little; growth is the highest RSS of the last quarter of the run minus the highest of the first
  quarter after warm-up: a leak raises every later peak by what it holds, the per-inference swing cancels out. The
  medians of both windows and every sample are in the JSON report.

    python -m bench.soak_node --duration 600                     # the full run (10 minutes, 3 x 1280x720 @ 30 Hz)
    python -m bench.soak_node --duration 30 --width 320 --height 240 --model DIR   # CI-sized
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.node_harness import rss_mb, start_node, stop
from test.ros_helpers import CAMERA_COUNTERS, counters_balance, header, loopback_ros_environment


def publish(cameras: list[str], width: int, height: int, hz: float, duration: float, ready, done) -> None:
    """The sensor side, in its own process: cameras at `hz`, LiDAR 10 Hz, radar 20 Hz, until `duration` is over."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from test.fuzz_inputs import good_lidar, good_radar

    rclpy.init()
    node = rclpy.create_node("soak_sensors")
    rng = np.random.default_rng(0)
    image_pubs = {c: node.create_publisher(Image, f"{c}/image", qos_profile_sensor_data) for c in cameras}
    from sensor_msgs.msg import PointCloud2

    lidar_pub = node.create_publisher(PointCloud2, "lidar/points", qos_profile_sensor_data)
    radar_pub = node.create_publisher(PointCloud2, "radar/points", qos_profile_sensor_data)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes() for _ in range(4)]
    while not all(p.get_subscription_count() for p in (*image_pubs.values(), lidar_pub, radar_pub)):
        time.sleep(0.05)
    ready.set()
    sent = dict.fromkeys(cameras, 0)
    start = time.monotonic()
    tick = 0
    next_lidar = next_radar = start
    while (now := time.monotonic()) - start < duration:
        stamp = time.time_ns()
        for camera in cameras:
            msg = Image(header=header(stamp, f"{camera}_camera"), height=height, width=width, encoding="rgb8",
                        step=width * 3)
            msg.data = frames[tick % len(frames)]
            image_pubs[camera].publish(msg)
            sent[camera] += 1
        if now >= next_lidar:
            lidar_pub.publish(good_lidar(rng, stamp, 2000))
            next_lidar += 0.1
        if now >= next_radar:
            radar_pub.publish(good_radar(rng, stamp))
            next_radar += 0.05
        tick += 1
        time.sleep(max(0.0, start + tick / hz - time.monotonic()))
    done.put(sent)
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of overload (default 600)")
    parser.add_argument("--cameras", default="front,left,right", help="camera names (default front,left,right)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--hz", type=float, default=30.0, help="camera rate (default 30)")
    parser.add_argument("--model", help="caption model (default: BLIP-base built from config, random weights)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the node (default 2)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    loopback_ros_environment("soak_node_ros_home_", own_domain=False, large_data_profile=True)
    cameras = [c for c in args.cameras.split(",") if c]

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    with tempfile.TemporaryDirectory(prefix="soak_node_") as tmp:
        workdir = Path(tmp)
        model = args.model
        if model is None:
            from blip_train.modeling import BLIP_BASE, build_blip

            model = str(workdir / "blip_base")
            build_blip([f"w{i}" for i in range(30_000)], model, arch=BLIP_BASE)
        node = start_node(workdir / "node.log", f"model:={model}", f"cameras:=[{','.join(cameras)}]",
                          "max_new_tokens:=20", "overlay:=false", threads=args.threads)
        rclpy.init()
        probe = rclpy.create_node("soak_probe")
        latencies: list[tuple[float, float, float]] = []  # (time, total ms, inference ms)
        diagnostics: dict[str, dict[str, str]] = {}
        reliable = QoSProfile(depth=100)

        def on_caption(msg) -> None:
            record = json.loads(msg.data)
            latencies.append((time.monotonic(), record["latency_ms"]["total"], record["latency_ms"]["inference"]))

        for camera in cameras:
            probe.create_subscription(String, f"{camera}/caption", on_caption, reliable)
        probe.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda msg: diagnostics.update({s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}),
            reliable)
        context = multiprocessing.get_context("spawn")
        ready, done = context.Event(), context.Queue()
        publisher = context.Process(target=publish, args=(cameras, args.width, args.height, args.hz, args.duration,
                                                          ready, done))
        publisher.start()
        rss_samples: list[tuple[float, float]] = []
        started = None
        try:
            while publisher.is_alive() and node.poll() is None:
                rclpy.spin_once(probe, timeout_sec=0.1)
                if ready.is_set():
                    started = started or time.monotonic()
                    if not rss_samples or time.monotonic() - rss_samples[-1][0] > 5:
                        rss_samples.append((time.monotonic(), rss_mb(node.pid)))
            sent = done.get(timeout=10) if node.poll() is None else {}
            # The last batch finishes and the 1 Hz diagnostics catch up: wait until every camera's counters balance
            # and stay unchanged for 2.5 s.
            settled_since, last = None, None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and node.poll() is None:
                rclpy.spin_once(probe, timeout_sec=0.1)
                snapshot = tuple(tuple(sorted(diagnostics.get(f"/caption_node: {c}", {}).items())) for c in cameras)
                if snapshot != last or not all(counters_balance(dict(s)) for s in snapshot):
                    settled_since, last = time.monotonic(), snapshot
                elif time.monotonic() - settled_since > 2.5:
                    break
        finally:
            alive = node.poll() is None
            exit_code = stop(node)
            publisher.join(10)
            probe.destroy_node()
            rclpy.try_shutdown()
        log_tail = (workdir / "node.log").read_text(errors="replace").splitlines()[-10:]

    counts = {c: {k: int(v) for k, v in diagnostics.get(f"/caption_node: {c}", {}).items()
                  if k in CAMERA_COUNTERS} for c in cameras}
    totals = np.array([t for _, t, _ in latencies]) if latencies else np.zeros(1)
    inference = np.array([i for _, _, i in latencies]) if latencies else np.zeros(1)
    quarter = max(len(latencies) // 4, 1)
    first_q, last_q = np.median(totals[:quarter]), np.median(totals[-quarter:])
    warm_t = [(t - started, r) for t, r in rss_samples if started and t - started >= args.duration / 5]
    warm = [r for _, r in warm_t]
    span = (warm_t[-1][0] - warm_t[0][0]) if warm_t else 0.0
    early = [r for t, r in warm_t if t <= warm_t[0][0] + span / 4] if warm_t else []
    late = [r for t, r in warm_t if t >= warm_t[-1][0] - span / 4] if warm_t else []
    growth = (max(late) - max(early)) if len(warm) > 1 else 0.0
    checks = {
        "alive": alive,
        "clean_exit": exit_code == 0,
        "drops_counted_exactly": bool(counts) and all(
            counters_balance(c) and c["bad_inputs"] == 0 and c["failed"] == 0 for c in counts.values()),
        "no_backlog": bool(latencies) and float(np.percentile(totals, 95)) <= 2.0 * float(
            np.percentile(inference, 95)) + 50.0 and last_q <= first_q * 1.5 + 50.0,
        "memory": growth < args.max_rss_growth_mb,
    }
    report = {
        "duration_s": args.duration, "cameras": cameras, "size": [args.width, args.height], "hz": args.hz,
        "sent": sent, "diagnostics": counts, "captions": len(latencies),
        "latency_total_ms": {"p50": round(float(np.percentile(totals, 50)), 1),
                             "p95": round(float(np.percentile(totals, 95)), 1),
                             "first_quarter_median": round(float(first_q), 1),
                             "last_quarter_median": round(float(last_q), 1)},
        "inference_ms": {"p50": round(float(np.percentile(inference, 50)), 1),
                         "p95": round(float(np.percentile(inference, 95)), 1)},
        "rss_mb": {"after_warmup": round(warm[0], 1) if warm else None,
                   "max": round(max(warm), 1) if warm else None, "growth": round(growth, 1),
                   "early_peak": round(max(early), 1) if early else None,
                   "late_peak": round(max(late), 1) if late else None,
                   "early_median": round(float(np.median(early)), 1) if early else None,
                   "late_median": round(float(np.median(late)), 1) if late else None,
                   "samples": [[round(t - started, 1), round(r, 1)] for t, r in rss_samples] if started else []},
        "checks": {name: bool(ok) for name, ok in checks.items()}, "passed": all(checks.values()),
    }
    checks = report["checks"]
    if not report["passed"]:
        report["node_log_tail"] = log_tail
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    shown = {**report, "rss_mb": {k: v for k, v in report["rss_mb"].items() if k != "samples"}}
    print(json.dumps(shown, indent=2))
    print(f"soak: {args.duration:.0f} s, {len(cameras)} cameras {args.width}x{args.height} @ {args.hz:g} Hz; "
          f"{'PASSED' if report['passed'] else 'FAILED'} {checks}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
