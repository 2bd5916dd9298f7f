"""What the node harnesses (fuzz, soak) share: a loopback-only ROS environment, starting caption_node, its RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ros_environment() -> None:
    """DDS stays on loopback, with a domain and ROS_HOME of this run's own (call before importing rclpy)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
    os.environ["ROS_HOME"] = tempfile.mkdtemp(prefix="node_harness_ros_home_")
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_data.xml"))
    os.environ["HF_HUB_OFFLINE"] = "1"


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_node(log: Path, *params: str, namespace: str = "/", threads: int = 1) -> subprocess.Popen:
    """caption_node as its own process (as `ros2 run` starts it), parameters as `name:=value` strings."""
    cmd = [sys.executable, "-m", "blip_caption_ros.node", "--ros-args", "--params-file",
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
