"""caption_node as a process: it survives publish and model errors, reports a dead worker, stops cleanly on
SIGINT / double SIGINT / SIGTERM, and never needs the network.

Faults are injected through test/hooks/sitecustomize.py (CAPTION_TEST_FAULTS), a test-only module the node
process imports at start-up; nothing of it ships in the package.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String

from test.ros_helpers import NodeProcess, Probe, make_image
from test.support import REPO

pytestmark = [pytest.mark.ros, pytest.mark.slow]
S, MS = 1_000_000_000, 1_000_000
HOOKS = Path(__file__).parent / "hooks"
ERROR = "2"
BAD_OUTPUT = ("Traceback", "terminate called", "RCLError")


def faulty_node(faults: str, *ros_args: str) -> NodeProcess:
    path = os.pathsep.join([str(HOOKS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return NodeProcess(*ros_args, env={"PYTHONPATH": path, "CAPTION_TEST_FAULTS": faults})


def stream_until(probe: Probe, cameras, predicate, timeout: float, what: str, period_s: float = 0.05) -> None:
    """Publish a frame per camera every `period_s` until `predicate()`."""
    stamp = [1_700_000_000 * S]

    def tick() -> bool:
        if time.monotonic() >= tick.next:
            stamp[0] += 50 * MS
            for camera in cameras:
                probe.publish(f"{camera}/image", make_image(stamp[0], camera))
            tick.next = time.monotonic() + period_s
        return predicate()

    tick.next = 0.0
    probe.spin_until(tick, timeout, what)


def caption_through_fault(probe, model, faults: str, captions_wanted: int, failed, what: str) -> tuple[dict, str]:
    """The node with `faults` injected, fed frames until `captions_wanted` captions arrived and the front camera's
    status has a `failed` count for which `failed(count)` holds; returns that status and the output of the node,
    which then stopped cleanly (exit 0, no traceback)."""
    node = faulty_node(faults, *model.node_args, "-p", "max_new_tokens:=4")
    try:
        captions = probe.subscribe(String, "front/caption")
        probe.wait_until_connected(node, {"front/image": Image}, ["front/caption"])
        stream_until(probe, ["front"], lambda: len(captions) >= captions_wanted, 60, f"{captions_wanted} captions")
        # the captioned count too: /diagnostics comes once a second, and a fast model captions between two
        status = probe.wait_status("/caption_node: front", lambda s: failed(int(s["failed"]))
                                   and int(s["captioned"]) >= captions_wanted, what=what)
    finally:
        code = node.stop()
    output = node.output()
    assert code == 0 and not any(bad in output for bad in BAD_OUTPUT), output
    return status, output


def test_a_publish_error_is_counted_and_captioning_goes_on(probe, caption_model):
    status, output = caption_through_fault(probe, caption_model, "publish_raises_once", 5, lambda n: n == 1,
                                           "failed == 1")
    assert int(status["captioned"]) >= 5
    assert "injected publish failure" in output, output


def test_a_model_failing_every_third_batch_does_not_stop_the_other_captions(probe, caption_model):
    status, output = caption_through_fault(probe, caption_model, "caption_raises_every=3", 8, lambda n: n >= 3,
                                           "three failed batches counted")
    failed, captioned = int(status["failed"]), int(status["captioned"])
    assert captioned >= 2 * failed - 2  # two of every three batches still captioned
    assert "injected model failure on batch 3" in output, output


def test_a_dead_worker_turns_diagnostics_error_and_ends_the_node_non_zero(probe, caption_model):
    node = faulty_node("worker_dies_after=2", *caption_model.node_args, "-p", "max_new_tokens:=4")
    try:
        captions = probe.subscribe(String, "front/caption")
        probe.wait_until_connected(node, {"front/image": Image}, ["front/caption"])
        stream_until(probe, ["front"], lambda: len(captions) >= 1, 60, "the first caption")
        first_caption = time.monotonic()
        stream_until(probe, ["front"], lambda: probe.status("/caption_node").get("level") == ERROR, 10,
                     "/diagnostics ERROR")
        assert time.monotonic() - first_caption < 1.5  # batch 2 runs right after batch 1: ERROR at once
        assert "caption worker stopped" in probe.status("/caption_node")["message"]
        assert node.wait(timeout=10) == 1
    finally:
        node.stop()
    fatal = [line for line in node.output().splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1 and "injected worker death" in fatal[0], node.output()


@pytest.mark.parametrize("kind", ["sigint", "double-sigint", "sigterm"])
def test_signals_stop_the_node_cleanly_while_frames_flow(probe, caption_model, kind):
    node = NodeProcess(*caption_model.node_args, "-p", "cameras:=[front,left]", "-p", "max_new_tokens:=4")
    captions = probe.subscribe(String, "left/caption")
    probe.wait_until_connected(node, {"front/image": Image, "left/image": Image}, ["front/caption", "left/caption"])
    stream_until(probe, ["front", "left"], lambda: len(captions) >= 2, 60, "captions of both cameras")
    moment = time.monotonic() + random.Random(kind).uniform(0.0, 0.5)
    stream_until(probe, ["front", "left"], lambda: time.monotonic() >= moment, 5, "a random moment")
    signalled = time.monotonic()
    node.process.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGINT)
    if kind == "double-sigint":
        time.sleep(0.05)
        node.process.send_signal(signal.SIGINT)
    try:
        code = node.wait(timeout=10)
    finally:
        node.stop()
    output = node.output()
    assert code == 0 and time.monotonic() - signalled < 2.5, output
    assert not any(bad in output for bad in BAD_OUTPUT), output


def test_an_uncached_hub_model_fails_at_once_without_touching_the_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), CAPTION_TEST_FAULTS="block_network", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HOOKS), str(REPO), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "blip_caption_ros.caption_node", "--ros-args", "-p",
                             "model:=Salesforce/blip-image-captioning-base"], env=env, cwd=tempfile.gettempdir(),
                            capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1 and elapsed < 5.0, (elapsed, output)
    fatal = [line for line in output.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1, output
    assert "not in the local HF cache" in fatal[0] and "hf download Salesforce/blip-image-captioning-base" in \
        fatal[0] and "save_pretrained directory" in fatal[0]
    assert "Traceback" not in output and "Retrying" not in output


def test_a_download_without_network_fails_within_seconds_with_one_line(tmp_path):
    """allow_model_download:=true on a vehicle without network: FATAL in seconds (huggingface_hub alone retried for
    3.5 minutes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), CAPTION_TEST_FAULTS="block_network", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HOOKS), str(REPO), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "blip_caption_ros.caption_node", "--ros-args", "-p",
                             "model:=Salesforce/blip-image-captioning-base", "-p", "allow_model_download:=true"],
                            env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1 and elapsed < 15.0, (elapsed, output)
    fatal = [line for line in output.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1 and "cannot be reached within 5 s" in fatal[0] and "network blocked" in fatal[0], output
    assert "Traceback" not in output and "Retrying" not in output
