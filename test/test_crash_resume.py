"""Crash-resume, CI-sized (bench/crash_resume.py): kill -9 mid-run, resume, same weights as an unbroken run."""

import json
import subprocess
import sys

import pytest

from test.support import REPO


@pytest.mark.slow
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path):
    report_file = tmp_path / "crash.json"
    # Two kills: one mid-epoch between checkpoints, one while a checkpoint is being written (then `last` is moved
    # to .last.old, as a crash between the renames of a commit leaves it); a half-written staging dir is planted.
    done = subprocess.run(
        [sys.executable, "-m", "bench.crash_resume", "--kills", "2", "--frames", "48",
         "--eval_every", "8", "--seed", "3", "--work", str(tmp_path / "work"), "--json", str(report_file)],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    assert report_file.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert all(report["checks"].values()), report
    assert report["comparison"]["bitwise_equal"] and report["comparison"]["max_abs_diff"] == 0.0
    kinds = [k["kind"] for k in report["kills"]]
    assert kinds == ["between", "checkpoint"]
    between = report["kills"][0]
    assert between["last_checkpoint_step"] < between["killed_at_step"]  # steps were lost and redone
    assert [r["step"] for r in report["resumes"]] == [k["last_checkpoint_step"] for k in report["kills"]]
    assert done.returncode == 0
