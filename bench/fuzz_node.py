"""Fuzz a running caption_node with malformed camera and point-cloud messages; check it survives and counts them.

Starts two caption nodes on loopback DDS (namespace /raw: sensor_msgs/Image; /comp: CompressedImage) with a tiny
random BLIP (or --model), then publishes N messages drawn from `test/fuzz_inputs.py`: bad images and
clouds of every kind, odd-but-valid ones, good frames (each waited for until its caption arrives), stamps that go
backwards and out of order. Pass when, at the end:

- both nodes are alive;
- every message arrived and is accounted for in /diagnostics: per camera received = captioned + dropped + bad
  (+ failed, which must be 0), and bad + dropped = the bad frames sent (good frames are never dropped, because the
  harness waits for each one's caption); per sensor received = sent and bad_inputs = the bad clouds sent;
- every good frame got its caption;
- node memory (RSS) grew less than --max-rss-growth-mb after the first tenth of the run.

    python -m bench.fuzz_node --messages 10000 [--seed 0] [--json report.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.node_harness import rss_mb, start_node, stop
from test.ros_helpers import CAMERA_COUNTERS, counters_balance, loopback_ros_environment

S = 1_000_000_000


class Harness:
    def __init__(self, seed: int):
        import numpy as np
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image, PointCloud2
        from std_msgs.msg import String

        self.rng = np.random.default_rng(seed)
        self.node = rclpy.create_node("fuzz_harness")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.pub = {
            "/raw/front/image": self.node.create_publisher(Image, "/raw/front/image", qos_profile_sensor_data),
            "/comp/front/image/compressed": self.node.create_publisher(
                CompressedImage, "/comp/front/image/compressed", qos_profile_sensor_data),
            "/raw/lidar/points": self.node.create_publisher(PointCloud2, "/raw/lidar/points",
                                                            qos_profile_sensor_data),
            "/raw/radar/points": self.node.create_publisher(PointCloud2, "/raw/radar/points",
                                                            qos_profile_sensor_data),
        }
        self.captions: dict[str, set[tuple[int, int]]] = defaultdict(set)
        reliable = QoSProfile(depth=1000)
        for ns in ("/raw", "/comp"):
            self.node.create_subscription(String, f"{ns}/front/caption", self._caption_callback(ns), reliable)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)

    def _caption_callback(self, ns: str):
        def callback(msg) -> None:
            stamp = json.loads(msg.data)["stamp"]
            self.captions[ns].add((stamp["sec"], stamp["nanosec"]))
        return callback

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def spin_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def connected(self) -> bool:
        return all(pub.get_subscription_count() > 0 for pub in self.pub.values())


def run(messages: int, seed: int, model: str, pace_ms: float, max_rss_growth_mb: float, workdir: Path,
        backend: str = "torch") -> dict:
    import rclpy

    from test import fuzz_inputs as fz

    common = (f"model:={model}", f"backend:={backend}", "max_new_tokens:=4", "overlay:=false")
    nodes = {"/raw": start_node(workdir / "raw.log", *common, "image_transport:=raw", namespace="/raw"),
             "/comp": start_node(workdir / "comp.log", *common, "image_transport:=compressed", namespace="/comp")}
    rclpy.init()
    harness = Harness(seed)
    rng = harness.rng
    sent: Counter = Counter()
    good_waited: Counter = Counter()
    kinds: Counter = Counter()
    rss: dict[str, dict[str, float]] = {ns: {} for ns in nodes}
    stamp = 1_700_000_000 * S
    used_stamps: set[int] = set()
    started = time.monotonic()
    try:
        harness.spin_until(lambda: harness.connected() and all(
            f"{ns}/caption_node" in harness.diagnostics for ns in nodes), 120, "the nodes to start")
        for i in range(messages):
            if i == messages // 10:
                for ns, process in nodes.items():
                    rss[ns]["warm"] = rss_mb(process.pid)
            roll = rng.random()
            stamp += int(rng.integers(1, 50)) * 1_000_000
            if rng.random() < 0.02:
                stamp -= 5 * S  # time goes backwards (a looping bag)
            msg_stamp = stamp - int(rng.integers(0, 30)) * 1_000_000  # out of order by up to 30 ms
            while msg_stamp in used_stamps:  # frames are told apart by stamp when their captions come back
                msg_stamp += 1
            used_stamps.add(msg_stamp)
            if roll < 0.30:
                topic, ns, mutant = "/raw/front/image", "/raw", _pick(rng, fz.image_mutants(rng, msg_stamp))
            elif roll < 0.55:
                topic, ns, mutant = ("/comp/front/image/compressed", "/comp",
                                     _pick(rng, fz.compressed_mutants(rng, msg_stamp)))
            elif roll < 0.70:
                topic, ns, mutant = "/raw/lidar/points", "/raw", _pick(rng, fz.cloud_mutants(rng, msg_stamp))
            elif roll < 0.80:
                topic, ns, mutant = ("/raw/radar/points", "/raw",
                                     _pick(rng, fz.cloud_mutants(rng, msg_stamp, radar=True)))
            elif roll < 0.85:
                topic, ns = "/raw/lidar/points", "/raw"
                mutant = fz.Mutant("good lidar", fz.good_lidar(rng, msg_stamp), False)
            elif roll < 0.90:
                topic, ns = "/raw/radar/points", "/raw"
                mutant = fz.Mutant("good radar", fz.good_radar(rng, msg_stamp), False)
            elif roll < 0.95:
                topic, ns = "/raw/front/image", "/raw"
                mutant = fz.Mutant("good image", fz.good_image(rng, msg_stamp), False)
            else:
                topic, ns = "/comp/front/image/compressed", "/comp"
                mutant = fz.Mutant("good jpeg", fz.good_jpeg(rng, msg_stamp), False)
            kinds[mutant.kind] += 1
            sent[(topic, "bad" if mutant.bad else "good")] += 1
            harness.pub[topic].publish(mutant.msg)
            is_frame = "image" in topic
            if is_frame and not mutant.bad:
                key = (mutant.msg.header.stamp.sec, mutant.msg.header.stamp.nanosec)
                harness.spin_until(lambda ns=ns, key=key: key in harness.captions[ns], 30,
                                   f"the caption of a good frame on {ns}")
                good_waited[ns] += 1
            else:
                deadline = time.monotonic() + pace_ms / 1000
                while time.monotonic() < deadline:
                    harness.executor.spin_once(timeout_sec=pace_ms / 4000)
            for ns_name, process in nodes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{ns_name}/caption_node died with exit code {process.returncode}")

        expected = _expected(sent)

        def settled() -> bool:
            return all(_matches(harness.diagnostics, ns, exp) for ns, exp in expected.items())

        with contextlib.suppress(TimeoutError):  # a mismatch is reported below, field by field
            harness.spin_until(settled, 30, "the diagnostics to account for every message")
        for ns, process in nodes.items():
            rss[ns]["end"] = rss_mb(process.pid)
        alive = {ns: process.poll() is None for ns, process in nodes.items()}
        counts = {ns: _counts(harness.diagnostics, ns) for ns in nodes}
    finally:
        harness.node.destroy_node()
        rclpy.try_shutdown()
        exit_codes = {ns: stop(process) for ns, process in nodes.items()}

    growth = {ns: round(values["end"] - values.get("warm", values["end"]), 1) for ns, values in rss.items()}
    checks = {
        "alive": all(alive.values()),
        "clean_exit": all(code == 0 for code in exit_codes.values()),
        "accounted": all(_matches_counts(counts[ns], exp) for ns, exp in expected.items()),
        "good_frames_captioned": all(len(harness.captions[ns]) >= good_waited[ns] for ns in nodes),
        "memory": all(g < max_rss_growth_mb for g in growth.values()),
    }
    return {
        "messages": messages, "seconds": round(time.monotonic() - started, 1), "kinds": dict(kinds),
        "expected": expected, "diagnostics": counts, "good_frames_waited": dict(good_waited),
        "rss_mb": rss, "rss_growth_mb": growth, "exit_codes": exit_codes, "checks": checks,
        "passed": all(checks.values()),
    }


def _pick(rng, mutants):
    return mutants[int(rng.integers(0, len(mutants)))]


def _expected(sent: Counter) -> dict[str, dict[str, int]]:
    raw_image = ("/raw/front/image",)
    return {
        "/raw": {
            "frames": sum(sent[(t, q)] for t in raw_image for q in ("good", "bad")),
            "bad_frames": sent[(raw_image[0], "bad")],
            "good_frames": sent[(raw_image[0], "good")],
            "lidar": sent[("/raw/lidar/points", "good")] + sent[("/raw/lidar/points", "bad")],
            "lidar_bad": sent[("/raw/lidar/points", "bad")],
            "radar": sent[("/raw/radar/points", "good")] + sent[("/raw/radar/points", "bad")],
            "radar_bad": sent[("/raw/radar/points", "bad")],
        },
        "/comp": {
            "frames": sent[("/comp/front/image/compressed", "good")] + sent[("/comp/front/image/compressed", "bad")],
            "bad_frames": sent[("/comp/front/image/compressed", "bad")],
            "good_frames": sent[("/comp/front/image/compressed", "good")],
        },
    }


def _counts(diagnostics: dict, ns: str) -> dict[str, int]:
    camera = diagnostics.get(f"{ns}/caption_node: front", {})
    node = diagnostics.get(f"{ns}/caption_node", {})
    out = {key: int(camera.get(key, -1)) for key in CAMERA_COUNTERS}
    for sensor in ("lidar", "radar"):
        if f"{sensor}_received" in node:
            out[f"{sensor}_received"] = int(node[f"{sensor}_received"])
            out[f"{sensor}_bad_inputs"] = int(node[f"{sensor}_bad_inputs"])
    return out


def _matches_counts(c: dict[str, int], exp: dict[str, int]) -> bool:
    ok = (c["received"] == exp["frames"] and c["failed"] == 0 and counters_balance(c)
          and c["bad_inputs"] + c["dropped"] == exp["bad_frames"] and c["captioned"] == exp["good_frames"])
    for sensor in ("lidar", "radar"):
        if sensor in exp:
            ok = ok and c.get(f"{sensor}_received") == exp[sensor] and c.get(f"{sensor}_bad_inputs") == exp[
                f"{sensor}_bad"]
    return ok


def _matches(diagnostics: dict, ns: str, exp: dict[str, int]) -> bool:
    return _matches_counts(_counts(diagnostics, ns), exp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="messages to publish (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="caption model (default: a tiny random BLIP built for the run)")
    parser.add_argument("--backend", default="torch", help="the node's backend for --model (default torch)")
    parser.add_argument("--pace-ms", type=float, default=4.0, help="pause after each bad message (default 4 ms)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0, help="memory growth allowed after warm-up")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    loopback_ros_environment("fuzz_node_ros_home_", own_domain=False, large_data_profile=True)
    with tempfile.TemporaryDirectory(prefix="fuzz_node_") as tmp:
        workdir = Path(tmp)
        model = args.model
        if model is None:
            from blip_train.modeling import TINY, build_blip

            model = str(workdir / "tiny_blip")
            build_blip(["a", "car", "road", "street", "night", "rain"], model, arch=TINY)
        report = run(args.messages, args.seed, model, args.pace_ms, args.max_rss_growth_mb, workdir, args.backend)
        if not report["passed"]:
            for log in ("raw.log", "comp.log"):
                tail = (workdir / log).read_text(errors="replace").splitlines()[-15:]
                report.setdefault("log_tails", {})[log] = tail
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    print(f"fuzz: {args.messages} messages in {report['seconds']} s; "
          f"{'PASSED' if report['passed'] else 'FAILED'} {report['checks']}; RSS growth {report['rss_growth_mb']} MB")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
