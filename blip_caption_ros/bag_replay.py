"""`bag-replay`: publish a rosbag2 over ROS 2 at its recorded timing, for machines without `ros2 bag play`.

rosbag2 and ros2cli are not installable from PyPI, so a machine with only the rclpy wheels cannot `ros2 bag play`.
This tool reads the bag with rosbags and publishes each message's recorded CDR bytes unchanged (rclpy publishes
serialized bytes directly), paced by the bag's receive times: `--rate` scales time, `--start-offset` skips the
first seconds, `--loop` starts over at the end (stamps then jump back, which the caption node handles), and
`--clock` publishes /clock so nodes can run with use_sim_time. On a vehicle with ROS installed,
`ros2 bag play BAG --clock --rate R --loop` does the same.

Topics whose message package is not installed are skipped with a warning. Publishers use reliable QoS with a
depth of 10 (compatible with both reliable and best-effort subscribers, such as the node's sensor-data ones).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from .bag_io import BagError, BagReader

CLOCK_PERIOD_S = 0.025  # /clock at 40 Hz while waiting, as `ros2 bag play --clock` does by default


def message_class(msgtype: str):
    """The rclpy message class of "pkg/msg/Type", or None when that package is not installed."""
    package, _, name = msgtype.rpartition("/")
    try:
        return getattr(importlib.import_module(package.replace("/", ".")), name)
    except (ImportError, AttributeError):
        return None


class BagReplay(Node):
    def __init__(self, bag: Path, rate: float = 1.0, start_offset_s: float = 0.0, loop: bool = False,
                 clock: bool = False, topics: list[str] | None = None):
        super().__init__("bag_replay")
        if rate <= 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        self.bag, self.rate, self.loop = bag, rate, loop
        self.start_offset_ns = int(start_offset_s * 1e9)
        self.published = 0
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        with BagReader(bag) as reader:
            available = reader.topics
        self.publishers_by_topic = {}
        for topic, msgtype in available.items():
            if topics is not None and topic not in topics:
                continue
            cls = message_class(msgtype)
            if cls is None:
                self.get_logger().warning(f"skipping {topic}: message type {msgtype} is not installed")
                continue
            self.publishers_by_topic[topic] = self.create_publisher(cls, topic, qos)
        self.clock_publisher = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_publisher = self.create_publisher(Clock, "/clock", 10)

    def wait_for_subscribers(self, topics: list[str], timeout_s: float) -> bool:
        """Wait until each of `topics` has a subscriber (so nothing is published into the void)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.publishers_by_topic[t].get_subscription_count() > 0 for t in topics
                   if t in self.publishers_by_topic):
                return True
            time.sleep(0.05)
        return False

    def _publish_clock(self, bag_time_ns: int) -> None:
        if self.clock_publisher is not None:
            from rosgraph_msgs.msg import Clock

            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(bag_time_ns, 1_000_000_000)
            self.clock_publisher.publish(msg)

    def play_once(self) -> int:
        """Publish the bag once at recorded timing; returns the number of messages published."""
        count = 0
        with BagReader(self.bag) as reader:
            first_ns = reader.start_ns + self.start_offset_ns
            wall_start = time.monotonic()
            for message in reader.messages(self.publishers_by_topic):
                if message.time_ns < first_ns:
                    continue
                due = wall_start + (message.time_ns - first_ns) / 1e9 / self.rate
                while (remaining := due - time.monotonic()) > 0:
                    if not rclpy.ok():
                        return count
                    self._publish_clock(message.time_ns - int(remaining * self.rate * 1e9))
                    time.sleep(min(remaining, CLOCK_PERIOD_S))
                self._publish_clock(message.time_ns)
                self.publishers_by_topic[message.topic].publish(bytes(message.raw))
                count += 1
        self.published += count
        return count

    def play(self) -> None:
        while rclpy.ok():
            if self.play_once() == 0 or not self.loop:
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bag-replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--start-offset", type=float, default=0.0, help="skip this many seconds of the bag")
    parser.add_argument("--loop", action="store_true", help="start over at the end")
    parser.add_argument("--clock", action="store_true", help="publish /clock (for use_sim_time)")
    parser.add_argument("--topics", nargs="+", help="only these topics (default: all)")
    parser.add_argument("--wait-for", nargs="+", default=[], metavar="TOPIC",
                        help="wait until these topics have a subscriber before playing")
    parser.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for --wait-for")
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=ros_args)
    try:
        replay = BagReplay(args.bag, args.rate, args.start_offset, args.loop, args.clock, args.topics)
    except (BagError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        if args.wait_for and not replay.wait_for_subscribers(args.wait_for, args.wait_timeout):
            replay.get_logger().warning(f"no subscriber on {', '.join(args.wait_for)} after {args.wait_timeout} s")
        replay.play()
        replay.get_logger().info(f"published {replay.published} messages from {args.bag}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        replay.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
