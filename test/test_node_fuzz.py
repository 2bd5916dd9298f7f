"""The fuzz harness, CI-sized: a few hundred malformed messages into two running nodes (bench/fuzz_node.py)."""

import json
import subprocess
import sys

import pytest

from test.support import REPO

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_node_survives_and_counts_every_bad_message(tmp_path, caption_model):
    report_file = tmp_path / "fuzz.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.fuzz_node", "--messages", "300", "--seed", "7",
         "--model", str(caption_model.path), "--backend", caption_model.backend, "--json", str(report_file)],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    assert report_file.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["checks"] == {"alive": True, "clean_exit": True, "accounted": True,
                                "good_frames_captioned": True, "memory": True}, report
    assert result.returncode == 0
    expected, seen = report["expected"], report["diagnostics"]
    assert expected["/raw"]["bad_frames"] > 20 and expected["/comp"]["bad_frames"] > 20  # the run really fuzzed
    assert seen["/raw"]["lidar_bad_inputs"] == expected["/raw"]["lidar_bad"] > 0
    assert seen["/raw"]["radar_bad_inputs"] == expected["/raw"]["radar_bad"] > 0
    assert seen["/comp"]["captioned"] == expected["/comp"]["good_frames"] > 0
