"""ROS messages the workstation tools write into drive bags (camera, LiDAR/radar, GPS, IMU, speed), as rosbags
dataclasses; the vehicle package reads and replays bags but writes only captions (blip_caption_ros.bag_io)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from blip_caption_ros.bag_io import header, msg_type

#: numpy dtype kind+size -> sensor_msgs/PointField datatype.
_POINTFIELD_DATATYPES = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 8}


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str):
    """sensor_msgs/Image, rgb8."""
    height, width = rgb.shape[:2]
    return msg_type("sensor_msgs/msg/Image")(
        header=header(stamp_ns, frame_id), height=height, width=width, encoding="rgb8", is_bigendian=0,
        step=width * 3, data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1))


def pointcloud_msg(points: np.ndarray, stamp_ns: int, frame_id: str):
    """sensor_msgs/PointCloud2 (unorganised, little-endian) from a structured numpy array, one field per column."""
    point_field = msg_type("sensor_msgs/msg/PointField")
    fields = []
    for name in points.dtype.names:
        dtype, offset = points.dtype.fields[name][:2]
        code = f"{dtype.kind}{dtype.itemsize}"
        if code not in _POINTFIELD_DATATYPES:
            raise ValueError(f"field {name!r} has dtype {dtype}, which PointField cannot describe")
        fields.append(point_field(name=name, offset=offset, datatype=_POINTFIELD_DATATYPES[code], count=1))
    data = np.ascontiguousarray(points.astype(points.dtype.newbyteorder("<"))).view(np.uint8).reshape(-1)
    return msg_type("sensor_msgs/msg/PointCloud2")(
        header=header(stamp_ns, frame_id), height=1, width=len(points), fields=fields, is_bigendian=False,
        point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * len(points), data=data, is_dense=True)


def navsat_msg(stamp_ns: int, latitude: float, longitude: float, altitude: float = 0.0,
               horizontal_accuracy_m: float | None = None, frame_id: str = "gps"):
    status_type = msg_type("sensor_msgs/msg/NavSatStatus")
    covariance = np.zeros(9)
    covariance_type = 0
    if horizontal_accuracy_m is not None:
        covariance[0] = covariance[4] = horizontal_accuracy_m ** 2
        covariance[8] = (2 * horizontal_accuracy_m) ** 2
        covariance_type = 1
    return msg_type("sensor_msgs/msg/NavSatFix")(
        header=header(stamp_ns, frame_id), status=status_type(status=0, service=1), latitude=float(latitude),
        longitude=float(longitude), altitude=float(altitude), position_covariance=covariance,
        position_covariance_type=covariance_type)


def imu_msg(stamp_ns: int, linear_acceleration: Sequence[float] | None = None,
            angular_velocity: Sequence[float] | None = None, frame_id: str = "imu"):
    """sensor_msgs/Imu without orientation (covariance[0] = -1, as REP-145 says for a missing estimate)."""
    vector3 = msg_type("geometry_msgs/msg/Vector3")
    unknown = np.zeros(9)
    unknown[0] = -1.0
    acc = linear_acceleration if linear_acceleration is not None else (0.0, 0.0, 0.0)
    gyro = angular_velocity if angular_velocity is not None else (0.0, 0.0, 0.0)
    return msg_type("sensor_msgs/msg/Imu")(
        header=header(stamp_ns, frame_id),
        orientation=msg_type("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=unknown,
        angular_velocity=vector3(x=float(gyro[0]), y=float(gyro[1]), z=float(gyro[2])),
        angular_velocity_covariance=np.zeros(9) if angular_velocity is not None else unknown.copy(),
        linear_acceleration=vector3(x=float(acc[0]), y=float(acc[1]), z=float(acc[2])),
        linear_acceleration_covariance=np.zeros(9) if linear_acceleration is not None else unknown.copy())


def twist_msg(stamp_ns: int, speed_mps: float, frame_id: str = "base_link"):
    """geometry_msgs/TwistStamped with the forward speed in linear.x (what BDD's GPS speed is)."""
    vector3 = msg_type("geometry_msgs/msg/Vector3")
    return msg_type("geometry_msgs/msg/TwistStamped")(
        header=header(stamp_ns, frame_id),
        twist=msg_type("geometry_msgs/msg/Twist")(linear=vector3(x=float(speed_mps), y=0.0, z=0.0),
                                                  angular=vector3(x=0.0, y=0.0, z=0.0)))


def report_written(out, counts: dict[str, int]) -> int:
    """The drive tools' last line (the bag written, its messages per topic) on stderr; their exit status, 0."""
    summary = ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items()))
    print(f"wrote {out}: {summary}", file=sys.stderr)
    return 0
