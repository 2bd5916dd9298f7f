"""How caption_node stops: SIGINT/SIGTERM become a stop request, and abort a start that is still importing or loading.

Shared by the executable (caption_node.py), which installs the handlers before anything heavy is imported, and the
node (node.py), which ends its spin loop on the request. Imports nothing but the standard library on purpose: it runs
before numpy, rclpy and torch are imported.
"""

from __future__ import annotations

import os
import signal
import threading

WORKER_THREAD = "caption_worker"
"""The caption worker thread's name (worker.py names its thread with it): a signal aborts a start only while no
thread of that name runs."""


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
        self._redelivered = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        first = not self.requested or self._redelivered
        self.requested = True
        self._redelivered = False
        # Abort a slow start, but never once a worker runs: the node must then be destroyed to stop it.
        if first and self.starting and not any(t.name == WORKER_THREAD for t in threading.enumerate()):
            if _in_finalizer(frame):
                # Raised inside a __del__ (regex's Group.__del__ runs during the imports), the exception would be
                # printed as "Exception ignored in ..." and dropped, and the start would go on: deliver the signal
                # again, from another thread, once the finalizer has returned.
                self._redelivered = True
                threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
                return
            raise StartInterrupted


def _in_finalizer(frame) -> bool:
    """Whether the interrupted code runs inside a __del__ (a finalizer cannot pass an exception on)."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False
