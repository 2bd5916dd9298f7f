"""What the managed (lifecycle) caption node decides, without rclpy: which parameters may change in which state,
how a model load is abandoned when a stop comes, and what /diagnostics says about the state.

The ROS 2 lifecycle (design.ros2.org/articles/node_lifecycle.html) maps onto the caption node as
    configure   read and check the parameters, load the model        (unconfigured -> inactive)
    activate    subscriptions, publishers and the caption worker     (inactive -> active)
    deactivate  worker stopped and joined, topics gone, model kept   (active -> inactive)
    cleanup     model freed                                          (inactive -> unconfigured)
    shutdown    everything freed, from any primary state             (-> finalized)
node.ManagedCaptionNode wires these to rclpy.lifecycle; the plain caption_node runs configure and activate at start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from .diagnostics import OK, WARN, Status

T = TypeVar("T")

UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = "unconfigured", "inactive", "active", "finalized"
#: What each transition state means for a reader of /diagnostics.
TRANSITION_STATES = {
    "configuring": "loading the model",
    "activating": "starting the subscriptions and the worker",
    "deactivating": "stopping the worker",
    "cleaningup": "freeing the model",
    "shuttingdown": "shutting down",
}


class LoadCancelled(RuntimeError):
    """A stop was requested while the model was still loading; the load is abandoned."""


def load_cancellably(load: Callable[[], T], cancel: threading.Event, poll_s: float = 0.05) -> T:
    """`load()` run on a daemon thread of its own; its result or exception, or LoadCancelled as soon as `cancel` is set.

    A model load cannot be interrupted (torch, TensorRT engine builds: minutes), so a stop during configure does not
    wait for it: the transition fails at once and the process exits; the abandoned daemon thread ends with it.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = load()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting transition, which reports it
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="caption_model_load", daemon=True)
    thread.start()
    while thread.is_alive():
        if cancel.wait(poll_s):
            raise LoadCancelled("stop requested while the model was loading")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def parameter_change_problem(name: str, dynamic: bool, state: str) -> str:
    """Why parameter `name` may not change in lifecycle `state` ("" when it may).

    Dynamic parameters (the prompt) change at any time; the rest are read when the node configures, so they may
    change only while it is unconfigured (after cleanup, or after a configure that failed).
    """
    if dynamic or state == UNCONFIGURED:
        return ""
    return f"{name} is read when the node configures: change it while the node is unconfigured (cleanup first)"


def state_status(node_name: str, state: str, model: str, failure: str = "") -> Status:
    """The node's /diagnostics status while it is not active (no cameras subscribed, so no camera statuses).

    OK in every regular state; WARN while unconfigured after a configure that failed, with its reason.
    """
    values = {"lifecycle_state": state, "model": model}
    if state in TRANSITION_STATES:
        return Status(node_name, model, OK, f"{state}: {TRANSITION_STATES[state]}", values)
    if state == UNCONFIGURED and failure:
        values["last_failure"] = failure
        return Status(node_name, model, WARN, f"unconfigured: configure failed: {failure}", values)
    message = {UNCONFIGURED: "unconfigured: no model loaded (configure to load it)",
               INACTIVE: "inactive: model loaded, not captioning (activate to start)"}.get(state, state)
    return Status(node_name, model, OK, message, values)
