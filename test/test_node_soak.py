"""The overload soak, CI-sized: 3 cameras at 60 Hz into a node that cannot keep up (bench/soak_node.py); at 30 Hz a
quiet machine captioned every frame of a camera with the tiny model, and the test overloaded nothing."""

import json
import subprocess
import sys

import pytest

from test.support import REPO

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_overloaded_node_stays_alive_and_counts_every_drop(tmp_path, tiny_blip_dir):
    report_file = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak_node", "--duration", "12", "--hz", "60", "--width", "320",
         "--height", "240", "--model", str(tiny_blip_dir), "--threads", "1", "--json", str(report_file)],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    assert report_file.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    checks = report["checks"]
    assert checks["alive"] and checks["clean_exit"] and checks["drops_counted_exactly"], report
    for camera, counts in report["diagnostics"].items():
        assert counts["received"] > 0.5 * report["sent"][camera], report  # loopback delivered most frames
        assert counts["dropped"] > 0, "the node kept up, so the test overloaded nothing"
        assert counts["captioned"] > 0
