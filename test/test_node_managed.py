"""The managed caption node (`caption_node --managed`) through the real lifecycle services, as a lifecycle manager or
`ros2 lifecycle set/get` drives it: every transition, captions only while active, a reactivation that reuses the
loaded model, a configure that fails and is tried again, shutdown from each state, and signals in every state.

The node runs as its own process with test/hooks/sitecustomize.py (CAPTION_TEST_FAULTS=slow_load=S): each model load
prints "test hook: model load N" and takes S seconds longer, so a load can be counted, timed and interrupted.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image
from std_msgs.msg import String

from test.ros_helpers import REPO, NodeProcess, Probe, make_image

pytestmark = [pytest.mark.ros, pytest.mark.slow]
S = 1_000_000_000
HOOKS = Path(__file__).parent / "hooks"
NODE = "/caption_node"
LOAD_S = 1.5
BAD_OUTPUT = ("Traceback", "terminate called", "RCLError", "Exception ignored")
TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
SHUTDOWN_FROM = {"unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
                 "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                 "active": Transition.TRANSITION_ACTIVE_SHUTDOWN}


@pytest.fixture(scope="module")
def model_args(request) -> tuple[str, ...]:
    """The node's model parameters: conftest's caption_model where it is defined (torch, or onnxruntime in the
    torch-free environments), else the tiny torch checkpoint."""
    try:
        return tuple(request.getfixturevalue("caption_model").node_args)
    except pytest.FixtureLookupError:
        return ("-p", f"model:={request.getfixturevalue('tiny_blip_dir')}")


def managed_node(*ros_args: str, load_s: float = LOAD_S) -> NodeProcess:
    path = os.pathsep.join([str(HOOKS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return NodeProcess(*ros_args, "-p", "max_new_tokens:=4", node_args=("--managed",),
                       env={"PYTHONPATH": path, "CAPTION_TEST_FAULTS": f"slow_load={load_s}"})


class Lifecycle:
    """A lifecycle manager's view of the node: change_state and get_state over the real services."""

    def __init__(self, probe: Probe, node: NodeProcess):
        self.probe, self.node = probe, node
        self.change = probe.node.create_client(ChangeState, f"{NODE}/change_state")
        self.get = probe.node.create_client(GetState, f"{NODE}/get_state")
        self.probe.spin_until(lambda: self._alive() and self.change.service_is_ready() and self.get.service_is_ready(),
                              60, "the lifecycle services")

    def _alive(self) -> bool:
        if self.node.process.poll() is not None:
            raise AssertionError(f"caption_node exited ({self.node.process.returncode}):\n{self.node.output()}")
        return True

    def call(self, client, request, timeout: float = 60.0):
        future = client.call_async(request)
        self.probe.spin_until(lambda: self._alive() and future.done(), timeout, f"{client.srv_name}")
        return future.result()

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def set(self, transition: str | int) -> tuple[bool, float]:
        """(success, seconds the transition took)."""
        transition_id = TRANSITIONS[transition] if isinstance(transition, str) else transition
        started = time.monotonic()
        ok = self.call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success
        return ok, time.monotonic() - started


def loads(node: NodeProcess) -> int:
    return node.output().count("test hook: model load")


def stream_until(probe: Probe, predicate, timeout: float, what: str, stamp: list[int]) -> None:
    """Publish a front frame every 50 ms (stamps advancing in `stamp`) until `predicate()`."""
    next_frame = [0.0]

    def tick() -> bool:
        if time.monotonic() >= next_frame[0]:
            stamp[0] += 50_000_000
            probe.publish("front/image", make_image(stamp[0], "front"))
            next_frame[0] = time.monotonic() + 0.05
        return predicate()

    probe.spin_until(tick, timeout, what)


def stream_for(probe: Probe, seconds: float, stamp: list[int]) -> None:
    end = time.monotonic() + seconds
    stream_until(probe, lambda: time.monotonic() >= end, seconds + 5, f"{seconds} s of frames", stamp)


def stop_cleanly(node: NodeProcess, signum=signal.SIGINT, within_s: float = 3.0) -> str:
    signalled = time.monotonic()
    node.process.send_signal(signum)
    try:
        code = node.wait(timeout=20)
    finally:
        node.stop()
    elapsed = time.monotonic() - signalled
    output = node.output()
    assert code == 0 and elapsed < within_s, (code, elapsed, output)
    assert not any(bad in output for bad in BAD_OUTPUT), output
    return output


def test_every_transition_through_the_services_and_captions_only_while_active(probe, model_args):
    node = managed_node(*model_args)
    try:
        life = Lifecycle(probe, node)
        captions = probe.subscribe(String, "front/caption")
        probe.publisher(Image, "front/image")
        assert life.state() == "unconfigured"
        status = probe.wait_status(NODE, lambda s: s.get("lifecycle_state") == "unconfigured")
        assert status["level"] == "0" and "no model loaded" in status["message"]
        assert loads(node) == 0 and probe.node.count_subscribers("front/image") == 0

        # configure loads the model on a thread of its own: get_state answers "configuring" meanwhile
        future = life.change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        started = time.monotonic()
        probe.spin_until(lambda: loads(node) == 1, 30, "the model load to start")
        assert life.state() == "configuring" and not future.done()
        probe.spin_until(future.done, 60, "configure")
        configure_s = time.monotonic() - started
        assert future.result().success and life.state() == "inactive" and configure_s >= LOAD_S
        probe.wait_status(NODE, lambda s: s.get("lifecycle_state") == "inactive")
        assert probe.node.count_subscribers("front/image") == 0 and probe.node.count_publishers("front/caption") == 0

        stamp = [1_700_000_000 * S]
        assert life.set("activate")[0] and life.state() == "active"
        probe.wait_until_connected(node, {"front/image": Image}, ["front/caption"])
        stream_until(probe, lambda: len(captions) >= 2, 30, "captions while active", stamp)
        probe.wait_status(NODE, lambda s: s.get("lifecycle_state") == "active")  # WARN: no LiDAR, radar

        ok, _ = life.set("deactivate")
        assert ok and life.state() == "inactive"
        last_before = stamp[0]
        stream_for(probe, 1.0, stamp)  # the worker is joined and the topics gone: no frame sent since is captioned
        captioned = [c["stamp"]["sec"] * S + c["stamp"]["nanosec"] for c in probe.captions("front/caption")]
        assert max(captioned) <= last_before
        assert probe.node.count_subscribers("front/image") == 0
        after_deactivate = len(captions)

        ok, reactivate_s = life.set("activate")  # the model stays loaded: no second load, no load time
        assert ok and loads(node) == 1 and reactivate_s < configure_s - LOAD_S / 2, (reactivate_s, configure_s)
        probe.wait_until_connected(node, {"front/image": Image}, ["front/caption"])
        stream_until(probe, lambda: len(captions) >= after_deactivate + 2, 30, "captions after reactivation", stamp)

        assert life.set("deactivate")[0] and life.set("cleanup")[0] and life.state() == "unconfigured"
        assert life.set("configure")[0] and loads(node) == 2  # cleanup freed the model: configure loads it again
        assert life.set("cleanup")[0] and life.set("shutdown")[0] and life.state() == "finalized"
        probe.wait_status(NODE, lambda s: s.get("lifecycle_state") == "finalized")
    finally:
        output = stop_cleanly(node)
    assert output.count("[ERROR]") == 0, output


def test_a_failing_configure_is_recoverable(probe, model_args, tmp_path):
    missing = tmp_path / "not_yet_here"
    node = managed_node(*model_args, "-p", f"model:={missing}", load_s=0.0)
    try:
        life = Lifecycle(probe, node)
        ok, _ = life.set("configure")
        assert not ok and life.state() == "unconfigured"
        status = probe.wait_status(NODE, lambda s: s["level"] == "1")
        assert f"configure failed: cannot load caption model '{missing}': no such directory" in status["message"]
        errors = [line for line in node.output().splitlines() if "[ERROR]" in line]
        assert len(errors) == 1 and "no such directory" in errors[0], node.output()

        model = model_args[1::2]  # "model:=..." (and "backend:=...")
        set_params = probe.node.create_client(SetParameters, f"{NODE}/set_parameters")
        assert set_params.wait_for_service(timeout_sec=10)
        values = [ParameterMsg(name=text.partition(":=")[0], value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=text.partition(":=")[2])) for text in model]
        assert all(r.successful for r in life.call(set_params, SetParameters.Request(parameters=values)).results)
        assert life.set("configure")[0] and life.state() == "inactive"
        probe.wait_status(NODE, lambda s: s["level"] == "0" and s.get("lifecycle_state") == "inactive")
        refused = life.call(set_params, SetParameters.Request(parameters=values[:1])).results[0]
        assert not refused.successful and "unconfigured" in refused.reason  # read while configured
    finally:
        stop_cleanly(node)


def drive_to(life: Lifecycle, state: str) -> None:
    for transition in {"unconfigured": [], "inactive": ["configure"], "active": ["configure", "activate"]}[state]:
        assert life.set(transition)[0]
    assert life.state() == state


@pytest.mark.parametrize("state", ["unconfigured", "inactive", "active"])
def test_shutdown_from_each_state(probe, model_args, state):
    node = managed_node(*model_args, load_s=0.0)
    try:
        life = Lifecycle(probe, node)
        drive_to(life, state)
        assert life.set(SHUTDOWN_FROM[state])[0] and life.state() == "finalized"
        probe.spin_until(lambda: probe.node.count_publishers("front/caption") == 0, 10, "the caption topic to go")
    finally:
        stop_cleanly(node)


@pytest.mark.parametrize(("state", "signum"), [("unconfigured", signal.SIGTERM), ("configuring", signal.SIGINT),
                                               ("inactive", signal.SIGTERM), ("active", signal.SIGINT)])
def test_a_signal_stops_the_node_cleanly_in_every_state(probe, model_args, state, signum):
    """Even during a model load of 60 s: the load is abandoned, the node is shut down and exits 0 at once."""
    node = managed_node(*model_args, load_s=60.0 if state == "configuring" else 0.0)
    life = Lifecycle(probe, node)
    if state == "configuring":
        life.change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        probe.spin_until(lambda: loads(node) == 1, 30, "the model load to start")
        assert life.state() == "configuring"
    else:
        drive_to(life, state)
    output = stop_cleanly(node, signum)
    assert "[ERROR]" not in output, output
    # configuring: ending within 3 s of a 60 s load is the load abandoned. The info line that says so is not asserted:
    # on the Jazzy wheels the process can end before rcutils writes it.
