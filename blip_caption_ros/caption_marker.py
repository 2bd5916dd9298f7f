"""The RViz text marker of a caption, built the same way by the node (rclpy messages) and caption-bag (rosbags).

Both message kinds expose the same fields, so one function fills a blank `visualization_msgs/Marker` of either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarkerSettings:
    """Where and how long the caption shows in RViz; the node's parameters marker_distance_m, marker_text_height_m
    and marker_lifetime_s (params.py holds their defaults and descriptions)."""

    distance_m: float
    text_height_m: float
    lifetime_s: float

    @classmethod
    def from_params(cls, params) -> MarkerSettings:
        return cls(params.marker_distance_m, params.marker_text_height_m, params.marker_lifetime_s)


def fill_text_marker(marker, header, camera: str, text: str, settings: MarkerSettings):
    """`marker` (a blank Marker) as a white TEXT_VIEW_FACING caption `distance_m` along the optical axis (+z)."""
    marker.header = header
    marker.ns, marker.id = camera, 0
    marker.type, marker.action = marker.TEXT_VIEW_FACING, marker.ADD
    marker.text = text
    marker.pose.position.z = float(settings.distance_m)
    marker.pose.orientation.w = 1.0
    marker.scale.z = float(settings.text_height_m)
    marker.color.r = marker.color.g = marker.color.b = marker.color.a = 1.0
    marker.lifetime.sec = int(settings.lifetime_s)
    marker.lifetime.nanosec = round(settings.lifetime_s % 1 * 1e9)
    return marker
