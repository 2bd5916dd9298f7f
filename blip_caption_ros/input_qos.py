"""The QoS of the node's camera and point-cloud subscriptions, and what a loss in transport means; no rclpy.

Measured with bench/camera_qos.py (README, "Frames from camera drivers"): raw 720p/1080p images from a driver on
default Fast DDS settings (no large-data profile) reach a best-effort subscription hardly at all, from a reliable
publisher too, while a reliable subscription receives every frame of a reliable publisher; a best-effort publisher
can only be matched best effort. ROS 2's `best_available` reliability would pick per publisher, but the middleware
resolves it once, when the subscription is created, from the publishers present then (none, if the node starts
first: it then requests reliable and never matches a best-effort driver that comes later). So the node does it
itself: under `best_available` (the default, unless a `qos_overrides` parameter fixes reliable or best_effort)
each input subscription follows its publishers, re-checked every second.
"""

from __future__ import annotations

from collections.abc import Iterable

RELIABLE, BEST_EFFORT, BEST_AVAILABLE = "reliable", "best_effort", "best_available"
#: The fraction of a topic's frames below which the node reports frames arriving far slower than published.
SLOW_ARRIVAL_FRACTION = 0.5
#: Frames lost within one diagnostics period before the loss is reported (a single lost frame is no pattern).
MIN_LOST_TO_REPORT = 3


def follow_publishers(offered: Iterable[str], current: str) -> str:
    """The reliability a following subscription should request, given what each publisher offers.

    Reliable when every publisher offers reliable (large frames survive only with retransmission when the driver
    has no shared-memory transport); best effort as soon as one publisher is best effort (a reliable subscription
    would not match it); `current` while there is no publisher.
    """
    offered = list(offered)
    if not offered:
        return current
    return RELIABLE if all(policy == RELIABLE for policy in offered) else BEST_EFFORT


def transport_problem(received: int, lost: int, incompatible: int, reliability: str) -> str:
    """Why frames are missing, with the fix, or "" when they are not; counts are since the last report.

    `lost` is what the middleware reports as lost (sequence gaps: samples published but never delivered);
    `incompatible` counts publishers found with a QoS this subscription cannot match.
    """
    if incompatible:
        return ("a publisher's QoS is incompatible with this subscription (it requests "
                f"{reliability}): set qos_overrides.<topic>.subscription.reliability to best_available or match "
                "the driver's QoS")
    published = received + lost
    if lost >= MIN_LOST_TO_REPORT and received < SLOW_ARRIVAL_FRACTION * published:
        return (f"frames arrive far slower than published: {received} of {published} received, {lost} lost in "
                "transport (large images without shared memory); fix: start the driver with the Fast DDS "
                "large-data profile (config/fastdds_large_data.xml, as caption.launch.py does for the node) or "
                "make it publish reliable")
    return ""
