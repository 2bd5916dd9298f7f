"""What the node harnesses (fuzz, soak, overhead) share: starting caption_node, its RSS, and the tests' helpers.

The loopback ROS environment, the message builders and the counters check are the tests' own (test.ros_helpers,
test.fuzz_inputs), imported by package name: run the bench scripts from the repository root as `python -m bench.NAME`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_node(log: Path, *params: str, namespace: str = "/", threads: int = 1) -> subprocess.Popen:
    """caption_node as its own process (as `ros2 run` starts it), parameters as `name:=value` strings."""
    cmd = [sys.executable, "-m", "blip_caption_ros.caption_node", "--ros-args", "--params-file",
           str(REPO / "config" / "caption.yaml"), "-r", f"__ns:={namespace}"]
    for param in params:
        cmd += ["-p", param]
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"})


def stop(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT as Ctrl-C would, then the exit code (killed only if it does not stop in time)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
