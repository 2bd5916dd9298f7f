"""The ament_python package builds with colcon and installs what `ros2 run` / `ros2 launch` look for."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test.support import REPO

COLCON = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))


@pytest.mark.skipif(not Path(COLCON).exists(), reason="colcon (colcon-common-extensions) is not installed")
def test_colcon_build_installs_node_launch_and_config(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    ignore = shutil.ignore_patterns(".venv", ".git", "runs", "build", "install", "log", "__pycache__", "*.egg-info")
    shutil.copytree(REPO, workspace / "src" / "blip_caption_ros", ignore=ignore)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([COLCON, "build", "--event-handlers", "console_direct-"], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = workspace / "install" / "blip_caption_ros"
    share = prefix / "share" / "blip_caption_ros"
    assert (prefix / "lib" / "blip_caption_ros" / "caption_node").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "blip_caption_ros").is_file()
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "caption.launch.py").is_file()
    assert (share / "config" / "caption.yaml").is_file()
    assert (share / "config" / "fastdds_large_data.xml").is_file()
    assert list((share / "config" / "train").glob("*.yaml")), "training recipes are installed"
