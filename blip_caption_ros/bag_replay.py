"""`bag-replay`: publish a recorded bag over ROS 2 at its recorded timing, for machines without `ros2 bag play`.

rosbag2 and ros2cli are not installable from PyPI, so a machine with only the rclpy wheels cannot `ros2 bag play`.
This tool reads any bag bag_io reads (rosbag2 sqlite3/MCAP of every version, split or compressed; ROS 1 bags
converted to CDR) and publishes each message's recorded bytes unchanged (rclpy publishes serialized bytes
directly), paced by the bag's receive times from its first message: `--rate` scales time, `--start-offset` skips
the first seconds, `--loop` starts over at the end (stamps then jump back, which the caption node handles), and
`--clock` publishes /clock so nodes can run with use_sim_time. On a vehicle with ROS installed,
`ros2 bag play BAG --clock --rate R --loop` does the same.

Each publisher offers what the recording publishers offered (rosbag2 stores their QoS): reliable unless one of them
was best-effort, transient-local only if all were, and a history deep enough for the topic's largest burst, so
messages recorded together are not overwritten before a subscriber takes them. A topic that cannot be published
(its message package is not installed, or it is not CDR) is skipped; at the end each topic's published and skipped
counts are printed with the reason. Exit status: 0 when everything asked for was published (or on SIGINT/SIGTERM,
which stop playback cleanly), 1 when nothing was published or a topic named in --topics was skipped, 2 for a bag
that cannot be read. Header stamps that are zero are replaced by the receive time (said once per topic). Frames
larger than the transport delivers reliably (LARGE_MESSAGE_BYTES) are announced before playback.
"""

from __future__ import annotations

import argparse
import importlib
import struct
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from .bag_io import BagError, BagReader, TopicInfo, typestore
from .caption_message import stamp_dict
from .shutdown import StartInterrupted, StopRequest

CLOCK_PERIOD_S = 0.025  # /clock at 40 Hz while waiting, as `ros2 bag play --clock` does by default
BURST_WINDOW_NS = 100_000_000
"""Messages of one topic recorded within this window are a burst: the publisher's history holds them all."""
MIN_DEPTH = 10
ACK_TIMEOUT_S = 10.0
#: How long --wait-for topics' subscriptions must stay unchanged before playing (see wait_for_subscribers).
SETTLE_S = 1.0
LARGE_MESSAGE_BYTES = 16 * 1024 * 1024
"""Measured with the shipped large-data profile (README, "Frame sizes DDS delivers"): up to 16 MiB every frame
arrived at a sensor-data subscriber, at 18-48 MiB a third to a half were lost. bag-replay warns above it."""


def message_class(msgtype: str):
    """The rclpy message class of "pkg/msg/Type" (or "pkg/srv/Type_Event"), or None when not installed."""
    package, _, name = msgtype.rpartition("/")
    try:
        return getattr(importlib.import_module(package.replace("/", ".")), name)
    except (ImportError, AttributeError, ValueError):
        return None


@dataclass
class TopicPlan:
    """What the pre-pass learnt about one topic: how many messages, the largest burst and message."""

    messages: int = 0
    burst: int = 0
    largest_bytes: int = 0
    _window: deque = field(default_factory=deque)

    def add(self, time_ns: int, size: int) -> None:
        self.messages += 1
        self.largest_bytes = max(self.largest_bytes, size)
        self._window.append(time_ns)
        while time_ns - self._window[0] > BURST_WINDOW_NS:
            self._window.popleft()
        self.burst = max(self.burst, len(self._window))


def publisher_qos(info: TopicInfo, burst: int):
    """The QoS to offer: the recorded publishers' reliability and durability, and a depth for the largest burst."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2.metadata import parse_qos

    try:
        offered = parse_qos(info.offered_qos_profiles) if info.offered_qos_profiles else []
    except Exception:  # noqa: BLE001 - unparsable QoS text: fall back to the defaults below
        offered = []
    best_effort = any(q.reliability == QosReliability.BEST_EFFORT for q in offered)
    latched = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    depth = max([MIN_DEPTH, burst] + [q.depth for q in offered])
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def header_first(msgtype: str) -> bool:
    """Whether a message type starts with a std_msgs/Header (whose stamp bag-replay may fill in)."""
    fields = typestore().fielddefs.get(msgtype)
    return bool(fields and fields[1] and fields[1][0][1][1] == "std_msgs/msg/Header")


def with_receive_stamp(raw: bytes, time_ns: int) -> bytes | None:
    """`raw` with a zero header stamp replaced by `time_ns`, or None when the stamp is set (CDR: 4-byte
    encapsulation, then Header.stamp = int32 sec, uint32 nanosec)."""
    if len(raw) < 12:
        return None
    order = "<" if raw[1] & 1 else ">"
    if struct.unpack_from(order + "iI", raw, 4) != (0, 0):
        return None
    out = bytearray(raw)
    stamp = stamp_dict(time_ns)
    struct.pack_into(order + "iI", out, 4, stamp["sec"], stamp["nanosec"])
    return bytes(out)


class BagReplay:
    """Plays one bag through rclpy publishers; a thin wrapper over an rclpy Node made in `main`."""

    def __init__(self, node, bag: Path, rate: float = 1.0, start_offset_s: float = 0.0, loop: bool = False,
                 clock: bool = False, topics: list[str] | None = None, stop: StopRequest | None = None):
        if rate <= 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        self.node, self.bag, self.rate, self.loop = node, bag, rate, loop
        self.stop = stop
        self.start_offset_ns = int(start_offset_s * 1e9)
        self.published: Counter = Counter()
        self.skipped: dict[str, tuple[str, int]] = {}
        self.stamped_by_receive_time: Counter = Counter()
        with BagReader(bag) as reader:
            info = reader.topic_info
            plans = {name: TopicPlan() for name in info}
            for message in reader.messages(topics):
                plans[message.topic].add(message.time_ns, len(message.raw))
        self.requested = list(topics) if topics else []
        for topic in self.requested:
            if topic not in info:
                self.skipped[topic] = (f"not in the bag (topics: {', '.join(sorted(info))})", 0)
        self.publishers_by_topic = {}
        self.fill_stamps: set[str] = set()
        for topic, topic_info in sorted(info.items()):
            if topics is not None and topic not in topics:
                continue
            plan = plans[topic]
            reason = self._unpublishable(topic_info)
            if reason:
                self.skipped[topic] = (reason, plan.messages)
                continue
            self.publishers_by_topic[topic] = node.create_publisher(
                message_class(topic_info.msgtype), topic, publisher_qos(topic_info, plan.burst))
            if header_first(topic_info.msgtype):
                self.fill_stamps.add(topic)
            if plan.largest_bytes > LARGE_MESSAGE_BYTES:
                node.get_logger().warning(
                    f"{topic}: messages up to {plan.largest_bytes / 2**20:.1f} MiB; DDS did not deliver all frames "
                    f"above {LARGE_MESSAGE_BYTES / 2**20:.0f} MiB with the shipped large-data profile (README, "
                    f"'Frame sizes DDS delivers'): expect losses")
        self.clock_publisher = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_publisher = node.create_publisher(Clock, "/clock", 10)

    @staticmethod
    def _unpublishable(info: TopicInfo) -> str:
        if info.serialization_format != "cdr":
            return f"serialization format {info.serialization_format!r} is not CDR"
        if not info.msgtype:
            return "the bag records no message type"
        if message_class(info.msgtype) is None:
            return f"message type {info.msgtype} is not installed"
        return ""

    def stopping(self) -> bool:
        import rclpy

        return (self.stop is not None and self.stop.requested) or not rclpy.ok()

    def wait_for_subscribers(self, topics: list[str], timeout_s: float) -> bool:
        """Wait until each of `topics` has a subscriber (so nothing is published into the void) and the topics'
        subscriptions have stayed the same for SETTLE_S: a subscriber that adapts its QoS to the publisher it sees,
        as caption_node does, re-subscribes once this player's publisher appears, and frames sent in between
        would reach neither its old subscription nor its new one."""
        deadline = time.monotonic() + timeout_s
        waited = [t for t in topics if t in self.publishers_by_topic]
        seen, since = None, time.monotonic()
        while time.monotonic() < deadline and not self.stopping():
            if all(self.publishers_by_topic[t].get_subscription_count() > 0 for t in waited):
                current = sorted(bytes(info.endpoint_gid) for t in waited
                                 for info in self.node.get_subscriptions_info_by_topic(t))
                if current != seen:
                    seen, since = current, time.monotonic()
                elif time.monotonic() - since >= SETTLE_S:
                    return True
            else:
                seen = None
            time.sleep(0.05)
        return False

    def _publish_clock(self, bag_time_ns: int) -> None:
        if self.clock_publisher is not None:
            from rosgraph_msgs.msg import Clock

            msg = Clock()
            stamp = stamp_dict(bag_time_ns)
            msg.clock.sec, msg.clock.nanosec = stamp["sec"], stamp["nanosec"]
            self.clock_publisher.publish(msg)

    def play_once(self) -> int:
        """Publish the bag once at recorded timing; returns the number of messages published."""
        count = 0
        with BagReader(self.bag) as reader:
            first_ns = wall_start = None
            for message in reader.messages(self.publishers_by_topic):
                if first_ns is None:
                    first_ns = message.time_ns + self.start_offset_ns
                    wall_start = time.monotonic()
                if message.time_ns < first_ns:
                    continue
                due = wall_start + (message.time_ns - first_ns) / 1e9 / self.rate
                while (remaining := due - time.monotonic()) > 0:
                    if self.stopping():
                        return count
                    self._publish_clock(message.time_ns - int(remaining * self.rate * 1e9))
                    time.sleep(min(remaining, CLOCK_PERIOD_S))
                if self.stopping():
                    return count
                self._publish_clock(message.time_ns)
                raw = bytes(message.raw)
                if message.topic in self.fill_stamps and (stamped := with_receive_stamp(raw, message.time_ns)):
                    if not self.stamped_by_receive_time[message.topic]:
                        self.node.get_logger().info(f"{message.topic}: zero header stamps; publishing the bag's "
                                                    "receive time instead")
                    self.stamped_by_receive_time[message.topic] += 1
                    raw = stamped
                self.publishers_by_topic[message.topic].publish(raw)
                self.published[message.topic] += 1
                count += 1
        return count

    def play(self) -> None:
        while not self.stopping():
            if self.play_once() == 0 or not self.loop:
                break
        self.wait_for_delivery()

    def wait_for_delivery(self, timeout_s: float = ACK_TIMEOUT_S) -> None:
        """Wait until reliable subscribers have acknowledged what was published: a publisher destroyed earlier
        takes its unsent messages with it (a burst at the end of a bag would be lost)."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        for topic, publisher in self.publishers_by_topic.items():
            if self.published[topic] and not self.stopping():
                publisher.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))

    def summary(self) -> list[str]:
        lines = [f"{topic}: published {n}" + (f" ({self.stamped_by_receive_time[topic]} stamped with receive time)"
                                              if self.stamped_by_receive_time[topic] else "")
                 for topic, n in sorted(self.published.items())]
        lines += [f"{topic}: skipped {n}: {reason}" for topic, (reason, n) in sorted(self.skipped.items())]
        return lines

    def exit_code(self) -> int:
        if not sum(self.published.values()):
            return 1
        return 1 if any(topic in self.skipped for topic in self.requested) else 0


def main(argv: list[str] | None = None) -> int:
    stop = StopRequest()  # before rclpy: SIGINT/SIGTERM end playback, never a traceback
    try:
        return _main(argv, stop)
    except StartInterrupted:
        return 0


def _main(argv: list[str] | None, stop: StopRequest) -> int:
    parser = argparse.ArgumentParser(prog="bag-replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory, .mcap/.db3 file, or ROS 1 .bag")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--start-offset", type=float, default=0.0,
                        help="skip this many seconds after the bag's first message")
    parser.add_argument("--loop", action="store_true", help="start over at the end")
    parser.add_argument("--clock", action="store_true", help="publish /clock (for use_sim_time)")
    parser.add_argument("--topics", nargs="+", help="only these topics (default: all)")
    parser.add_argument("--wait-for", nargs="+", default=[], metavar="TOPIC",
                        help="wait until these topics have a subscriber before playing")
    parser.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for --wait-for")
    args, ros_args = parser.parse_known_args(argv)
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=ros_args, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("bag_replay")
    try:
        try:
            replay = BagReplay(node, args.bag, args.rate, args.start_offset, args.loop, args.clock, args.topics,
                               stop=stop)
        except (BagError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        stop.starting = False
        waited = not args.wait_for or replay.wait_for_subscribers(args.wait_for, args.wait_timeout)
        if not waited and not stop.requested:
            node.get_logger().warning(f"no subscriber on {', '.join(args.wait_for)} after {args.wait_timeout} s")
        replay.play()
        summary = replay.summary()
        print(f"bag-replay {args.bag}{' (stopped)' if stop.requested else ''}:\n  " + "\n  ".join(
            summary or ["nothing published yet" if stop.requested else "no messages in the bag"]), file=sys.stderr,
            flush=True)
        if stop.requested:
            return 0
        if not sum(replay.published.values()):
            print(f"error: nothing was published from {args.bag}", file=sys.stderr)
        elif replay.exit_code():
            print("error: a topic given with --topics was skipped", file=sys.stderr)
        return replay.exit_code()
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
