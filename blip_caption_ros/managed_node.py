"""The managed caption node: node.CaptionCore driven through the ROS 2 lifecycle (rclpy.lifecycle).

    caption_node --managed --ros-args ...          (ros2 launch ... managed:=true; ros2 lifecycle set/get)

configure loads the model (a failure returns FAILURE with a one-line reason and leaves the node unconfigured, ready
to configure again), activate starts the subscriptions, publishers and worker, deactivate stops them and keeps the
model, cleanup frees it, shutdown works from every primary state. What each state means: blip_caption_ros.lifecycle.

The lifecycle services answer while a transition runs: the node spins a multi-threaded executor, and its lifecycle
services sit in a callback group that runs one change_state at a time but get_state and the other queries at any
time, so `ros2 lifecycle get` says "configuring" during a model load of minutes. A stop during configure abandons
the load at once (lifecycle.load_cancellably).
"""

from __future__ import annotations

import threading

from lifecycle_msgs.srv import ChangeState
from rclpy.callback_groups import CallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from .lifecycle import ACTIVE, FINALIZED, INACTIVE, UNCONFIGURED, LoadCancelled
from .node import STARTUP_ERRORS, CaptionCore

#: Threads of the executor: a transition (a model load), the lifecycle queries, subscriptions and the timer.
EXECUTOR_THREADS = 4


class OneTransitionAtATime(CallbackGroup):
    """change_state requests run one after another; get_state & co. run whenever they arrive."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._transition_running = False

    @staticmethod
    def _is_transition(entity) -> bool:
        return getattr(entity, "srv_type", None) is ChangeState

    def can_execute(self, entity) -> bool:
        return not (self._is_transition(entity) and self._transition_running)

    def beginning_execution(self, entity) -> bool:
        if not self._is_transition(entity):
            return True
        with self._lock:
            if self._transition_running:
                return False
            self._transition_running = True
            return True

    def ending_execution(self, entity) -> None:
        if self._is_transition(entity):
            with self._lock:
                self._transition_running = False


class ManagedCaptionNode(LifecycleNodeMixin, Node):
    """rclpy.lifecycle.LifecycleNode, put together as it is (the mixin over Node), because only the mixin takes the
    callback group of the lifecycle services."""

    def __init__(self, **kwargs):
        Node.__init__(self, "caption_node", **kwargs)
        LifecycleNodeMixin.__init__(self, callback_group=OneTransitionAtATime())
        self.core = CaptionCore(self, managed=True)

    @staticmethod
    def make_executor():
        return MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)

    def _transition(self, label: str, step, done: str, failed: str) -> TransitionCallbackReturn:
        """Run `step` as the `label` transition: SUCCESS -> state `done`; a known failure -> FAILURE (state `failed`,
        reason logged in one line and kept for /diagnostics); anything else -> ERROR (on_error cleans up)."""
        self.core.state = label
        try:
            step()
        except LoadCancelled as exc:  # the process is stopping: not an error
            self.core.state = failed
            self.get_logger().info(f"{label} abandoned: {exc}")
            return TransitionCallbackReturn.FAILURE
        except STARTUP_ERRORS as exc:
            self.core.state, self.core.failure = failed, str(exc)
            self.get_logger().error(f"{label} failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:
            self.core.failure = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"{label} failed: {self.core.failure}")
            return TransitionCallbackReturn.ERROR
        self.core.state, self.core.failure = done, ""
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configuring", self.core.configure, INACTIVE, UNCONFIGURED)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("activating", self.core.activate, ACTIVE, INACTIVE)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("deactivating", self.core.deactivate, INACTIVE, ACTIVE)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleaningup", self.core.cleanup, UNCONFIGURED, INACTIVE)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("shuttingdown", self.core.cleanup, FINALIZED, FINALIZED)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """After a transition raised: free everything and return to unconfigured."""
        self.core.cleanup()
        self.core.state = UNCONFIGURED
        return TransitionCallbackReturn.SUCCESS

    def stop(self) -> None:
        """On the main thread after the executor stopped: the shutdown transition from whatever state the node is
        in (a stop during configure has abandoned its load and left it unconfigured)."""
        if self.core.state in (UNCONFIGURED, INACTIVE, ACTIVE):
            self.trigger_shutdown()
        self.core.cleanup()

