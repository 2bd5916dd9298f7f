"""The caption_node executable: signal handling first, then the node.

    caption_node --ros-args ...                      (ros2 run / ros2 launch; the console script)
    caption_node --managed --ros-args ...            the lifecycle node (managed_node), for a lifecycle manager
    python -m blip_caption_ros.caption_node [--managed] --ros-args ...

Importing the node (rclpy, torch, transformers) takes a second or more. Python's default SIGINT handler would raise
KeyboardInterrupt wherever that import is, and print a traceback; so this module, which imports nothing heavy,
installs the node's SIGINT/SIGTERM handling before it imports blip_caption_ros.node. A signal during the import or
while the model loads ends the process with exit code 0 and no traceback. Only the interpreter's own start-up (before
this module runs: tens of milliseconds) is left to Python's defaults.
"""

from __future__ import annotations

import os
import sys

from .shutdown import StartInterrupted, StopRequest


def wants_managed(argv: list[str]) -> bool:
    """Whether `--managed` comes before `--ros-args` (after it, every argument belongs to ROS)."""
    own = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    return "--managed" in own


def main(args=None) -> None:
    """Run caption_node until SIGINT/SIGTERM (exit 0), a startup error or a dead worker (exit 1); ends the process."""
    stop = StopRequest()
    try:
        if wants_managed(sys.argv[1:] if args is None else list(args)):
            from .managed_node import ManagedCaptionNode as node_class
        else:
            from .node import CaptionNode as node_class
        from .node import run

        exit_code = run(stop, args, node_class)
    except StartInterrupted:  # during the import of the node
        exit_code = 0
    # Everything is stopped, flushed and shut down: end the process now. Interpreter finalisation (module teardown
    # of torch/transformers) adds seconds on a loaded CPU and can still meet C++ threads of the libraries.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


if __name__ == "__main__":
    main()
