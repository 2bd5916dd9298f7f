"""The caption_node executable: signal handling first, then the node.

    caption_node --ros-args ...                      (ros2 run / ros2 launch; the console script)
    python -m blip_caption_ros.caption_node --ros-args ...

Importing the node (rclpy, torch, transformers) takes a second or more. Python's default SIGINT handler would raise
KeyboardInterrupt wherever that import is, and print a traceback; so this module, which imports nothing heavy,
installs the node's SIGINT/SIGTERM handling before it imports blip_caption_ros.node. A signal during the import or
while the model loads ends the process with exit code 0 and no traceback. Only the interpreter's own start-up (before
this module runs: tens of milliseconds) is left to Python's defaults.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

WORKER_THREAD = "caption_worker"
"""The worker thread's name (worker.WORKER_THREAD, which is checked to be the same; importing worker here would
import numpy before the handlers are in place)."""


class StartInterrupted(BaseException):
    """Raised by the signal handler while the node is still starting (importing, loading the model)."""


class StopRequest:
    """SIGINT and SIGTERM ask the main loop to stop; they never raise into the shutdown that follows.

    Why not rclpy's own handlers: on SIGINT/SIGTERM they shut the rclpy context down at once, from the signal, while
    the worker thread may be publishing ("RCLError: publisher's context is invalid"), and SIGINT then raises
    KeyboardInterrupt wherever the main thread is (inside worker.stop()'s join, say). So the node starts rclpy with
    `rclpy.init(signal_handler_options=SignalHandlerOptions.NO)` (rclpy.signals; Humble, Jazzy and Kilted alike),
    handles the signals itself, stops the worker, destroys the node and only then calls `rclpy.try_shutdown()`.
    A second signal (Ctrl-C reaches a launched node twice: from the terminal and from launch) changes nothing.
    """

    def __init__(self):
        self.requested = False
        self.starting = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        first = not self.requested
        self.requested = True
        # Abort a slow start, but never once a worker runs: the node must then be destroyed to stop it.
        if first and self.starting and not any(t.name == WORKER_THREAD for t in threading.enumerate()):
            raise StartInterrupted


def main(args=None) -> None:
    """Run caption_node until SIGINT/SIGTERM (exit 0), a startup error or a dead worker (exit 1); ends the process."""
    stop = StopRequest()
    try:
        from .node import run

        exit_code = run(stop, args)
    except StartInterrupted:  # during the import of the node
        exit_code = 0
    # Everything is stopped, flushed and shut down: end the process now. Interpreter finalisation (module teardown
    # of torch/transformers) adds seconds on a loaded CPU and can still meet C++ threads of the libraries.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


if __name__ == "__main__":
    main()
