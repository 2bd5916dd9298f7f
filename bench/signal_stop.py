"""How cleanly caption_node stops: a real node process, two cameras with frames flowing, signalled at random moments.

    python -m bench.signal_stop --model DIR [--runs 20] [--kinds sigint,double-sigint,sigterm] [--seed 0]

Each run starts the node, streams 10 Hz frames on front/ and left/ until both cameras are captioned, waits a random
0-1.5 s more (so the signal lands during inference, publishing or idle), then sends SIGINT, SIGINT twice 50 ms
apart (what Ctrl-C under `ros2 launch` delivers), or SIGTERM. A run is clean when the node exits 0 within 2 s plus
one inference and its output holds no "Traceback", "terminate called" or "RCLError". Prints one line per run and
per kind: runs, clean exits, median and worst stop time. Exit status 1 if any run was not clean.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import time
from pathlib import Path

from bench.node_harness import start_node
from test.ros_helpers import loopback_ros_environment

BAD_OUTPUT = ("Traceback", "terminate called", "RCLError")
KINDS = ("sigint", "double-sigint", "sigterm")


def one_run(probe, model: str, kind: str, delay_s: float, log: Path, timeout_s: float) -> tuple[bool, float, str]:
    """(clean, seconds from the first signal to exit, reason when not clean)."""
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    process = start_node(log, f"model:={model}", "cameras:=[front,left]", "lidar_topic:=''", "radar_topic:=''")
    seen: dict[str, int] = {"front": 0, "left": 0}
    subscriptions = [probe.create_subscription(String, f"{camera}/caption",
                                               lambda _msg, c=camera: seen.__setitem__(c, seen[c] + 1), 10)
                     for camera in seen]
    publishers = {camera: probe.create_publisher(Image, f"{camera}/image", 1) for camera in seen}
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    pixels = bytes(64 * 48 * 3)
    stamp, next_frame, deadline = 1_700_000_000 * 10**9, 0.0, time.monotonic() + 120
    signal_at = None
    try:
        while process.poll() is None:
            now = time.monotonic()
            if now > deadline:
                return False, float("nan"), "no captions within 120 s"
            if now >= next_frame:
                stamp += 100_000_000
                for camera, publisher in publishers.items():
                    msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=pixels)
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                    msg.header.frame_id = camera
                    publisher.publish(msg)
                next_frame = now + 0.1
            if signal_at is None and min(seen.values()) > 0:
                signal_at = now + delay_s
            if signal_at is not None and now >= signal_at:
                break
            executor.spin_once(timeout_sec=0.01)
        if process.poll() is not None:
            return False, float("nan"), f"exited {process.returncode} before the signal"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGINT)
        if kind == "double-sigint":
            time.sleep(0.05)
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout_s)
        except Exception:  # subprocess.TimeoutExpired: a hang is a result, not a crash of the benchmark
            process.kill()
            process.wait()
            return False, float("nan"), f"still running {timeout_s} s after the signal"
        elapsed = time.monotonic() - signalled
        output = log.read_text(errors="replace")
        bad = [text for text in BAD_OUTPUT if text in output]
        if code != 0 or bad:
            return False, elapsed, f"exit {code}, output has {bad}"
        return True, elapsed, ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        executor.remove_node(probe)
        for subscription in subscriptions:
            probe.destroy_subscription(subscription)
        for publisher in publishers.values():
            probe.destroy_publisher(publisher)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="save_pretrained directory (a tiny model is enough)")
    parser.add_argument("--runs", type=int, default=20, help="runs per kind of signal")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-s", type=float, default=2.0, help="allowed stop time beyond one inference")
    parser.add_argument("--work", default="/tmp/signal_stop", help="directory for the node logs")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: unknown {sorted(set(kinds) - set(KINDS))}")
    loopback_ros_environment("signal_stop_ros_home_", own_domain=False)
    import rclpy

    rclpy.init()
    probe = rclpy.create_node("signal_stop_probe")
    rng = random.Random(args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    plan = [kind for _ in range(args.runs) for kind in kinds]  # interleaved, so load drifts hit every kind alike
    results: dict[str, list[tuple[bool, float]]] = {kind: [] for kind in kinds}
    try:
        for index, kind in enumerate(plan):
            delay = rng.uniform(0.0, 1.5)
            clean, seconds, reason = one_run(probe, args.model, kind, delay, work / f"run_{index:03d}_{kind}.log",
                                             timeout_s=30.0)
            clean = clean and seconds < args.limit_s + 1.0  # + one tiny-model inference, generously
            results[kind].append((clean, seconds))
            print(f"run {index + 1:3d}/{len(plan)} {kind:14s} delay {delay:.2f} s  stop {seconds:.2f} s  "
                  f"{'clean' if clean else 'NOT CLEAN: ' + (reason or 'too slow')}", flush=True)
    finally:
        probe.destroy_node()
        rclpy.try_shutdown()
    print()
    for kind, rows in results.items():
        times = [s for _, s in rows if s == s]
        print(f"{kind:14s} runs {len(rows):3d}  clean exits {sum(c for c, _ in rows):3d}  stop time median "
              f"{statistics.median(times):.2f} s, max {max(times):.2f} s" if times else f"{kind}: no timings")
    return 0 if all(c for rows in results.values() for c, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
