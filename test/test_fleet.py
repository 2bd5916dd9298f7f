"""caption-bags on a local Ray with 2 workers: outputs equal caption-bag's, a corrupt bag fails alone, a killed job
resumes and skips the drives it had finished."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test.support import REPO, require_module

require_module("ray")

from blip_caption_ros import bag_io  # noqa: E402
from blip_caption_ros import caption_bag as caption_bag_cli  # noqa: E402
from blip_train.drives import fleet  # noqa: E402
from blip_train.drives.synthetic_drive import DriveConfig, write_drive  # noqa: E402

DURATIONS_S = (4.0, 3.0, 3.0, 2.0, 2.0)
FLAGS = ["--max-new-tokens", "6", "--rate", "1"]


@pytest.fixture(scope="module")
def fleet_drives(tmp_path_factory, tiny_blip_dir):
    """Five small drives and a corrupt bag in one folder, and what caption-bag writes for each good drive."""
    root = tmp_path_factory.mktemp("fleet")
    bags = root / "bags"
    for index, duration in enumerate(DURATIONS_S):
        write_drive(bags / f"drive{index}", DriveConfig(duration_s=duration, width=160, height=90, seed=index))
    (bags / "corrupt.mcap").write_bytes(b"\x89MCAP0\r\n" + b"not a record" * 64)
    reference = root / "reference"
    for index in range(len(DURATIONS_S)):
        rc = caption_bag_cli.main([str(bags / f"drive{index}"), "--out", str(reference / f"drive{index}"),
                                   "--model", str(tiny_blip_dir), *FLAGS])
        assert rc == 0
    return bags, reference


def _contents(bag: Path) -> dict[str, list]:
    """Every message by topic; caption JSON without its latency figures (timings differ between runs)."""
    out: dict[str, list] = {}
    with bag_io.BagReader(bag) as reader:
        for message in reader.messages():
            if message.topic.endswith("/caption"):
                record = json.loads(reader.decode(message).data)
                record.pop("latency_ms")
                item = (message.time_ns, record)
            else:
                item = (message.time_ns, bytes(message.raw))
            out.setdefault(message.topic, []).append(item)
    return out


def _kill_job(pid: int) -> int:
    """SIGKILL a process and all its descendants (Ray's services and its workers, which sit in process groups of
    their own); the number killed."""
    import psutil

    processes = [psutil.Process(pid)]
    processes += processes[0].children(recursive=True)
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=30)
    return len(processes)


def _complete(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if not p.name.endswith(".partial")} if out.exists() else set()


@pytest.mark.slow
def test_a_killed_job_resumes_and_outputs_equal_caption_bag(fleet_drives, tiny_blip_dir, tmp_path, capsys):
    bags, reference = fleet_drives
    out = tmp_path / "out"
    command = [sys.executable, "-m", "blip_train.drives.fleet", str(bags), "--out", str(out), "--workers", "2",
               "--model", str(tiny_blip_dir), *FLAGS]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 240
    while not _complete(out) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _kill_job(job.pid) > 2  # the driver, Ray's services and the two workers
    job.wait()
    finished_before = _complete(out)
    assert finished_before, job.stderr.read().decode()[-2000:]
    assert len(finished_before) < len(DURATIONS_S), "the job finished before it could be killed"
    before = {name: (out / name).stat().st_mtime_ns for name in finished_before}

    rc = fleet.main([str(bags), "--out", str(out), "--workers", "2", "--retries", "1",
                     "--model", str(tiny_blip_dir), *FLAGS])
    err = capsys.readouterr().err
    assert rc == 1  # the corrupt bag
    good = {f"drive{i}" for i in range(len(DURATIONS_S))}
    assert _complete(out) == good
    assert f"{len(good) - len(finished_before)} done, 1 failed, {len(finished_before)} already complete" in err
    assert {name: (out / name).stat().st_mtime_ns for name in finished_before} == before  # not redone
    failed_lines = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed_lines) == 1 and "corrupt.mcap" in failed_lines[0] and "not a readable" in failed_lines[0]
    for name in sorted(good):
        assert _contents(out / name) == _contents(reference / name), name


def test_inputs_are_found_and_named_one_output_each(tmp_path, fleet_drives):
    bags, _ = fleet_drives
    found = fleet.find_bags([str(bags / "drive*"), str(bags)])
    assert [p.name for p in found] == [f"drive{i}" for i in range(len(DURATIONS_S))] + ["corrupt.mcap"]
    drives = fleet.plan_drives(found, tmp_path)
    assert [d.size_bytes for d in drives] == sorted((d.size_bytes for d in drives), reverse=True)
    assert drives[0].bag.name == "drive0" and drives[0].out == tmp_path / "drive0"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "drive0.mcap").write_bytes(b"")
    with pytest.raises(fleet.FleetError, match="would both be written to"):
        fleet.plan_drives(fleet.find_bags([str(bags / "drive0"), str(tmp_path / "elsewhere")]), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(fleet.FleetError, match="empty: a folder with no rosbag2 bags"):
        fleet.find_bags([str(tmp_path / "empty")])


def test_bad_arguments_are_reported_without_ray(tmp_path, tiny_blip_dir, capsys):
    assert fleet.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--model", str(tiny_blip_dir)]) == 2
    assert "missing: no such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fleet.main([str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(tiny_blip_dir),
                    "--gpus-per-worker", "1"])
    assert "pass --device cuda" in capsys.readouterr().err
