"""Malformed camera and point-cloud messages, for proving that a perception node survives what a vehicle sends.

Each generator returns a real sensor_msgs message and whether a correct consumer must reject it. The mutations are
the ones met in the field: truncated or corrupt JPEG/PNG, unknown encodings, step/width/height that disagree with
the payload, zero and absurd sizes, big-endian payloads, clouds with missing fields or wrong datatypes, NaN/inf
coordinates, point_step or row_step that do not match the data, and empty clouds. Stamps can be shuffled or sent
backwards by the caller. Valid messages come from the tests' builders (ros_helpers); each mutant is one of them
with a field broken. Used by `bench/fuzz_node.py` (and its CI-sized test) and `bench/soak_node.py`; imports message
types, not rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField

from test.ros_helpers import header, make_cloud, make_compressed, make_image


@dataclass(frozen=True)
class Mutant:
    kind: str
    msg: object
    bad: bool


def good_image(rng: np.random.Generator, stamp_ns: int, width: int = 96, height: int = 64) -> Image:
    return make_image(stamp_ns, "camera", width, height, seed=rng)


def good_jpeg(rng: np.random.Generator, stamp_ns: int, width: int = 96, height: int = 64) -> CompressedImage:
    return make_compressed(stamp_ns, "camera", "jpeg", width, height, seed=rng)


def _raw(stamp_ns, encoding, width, height, step, data, bigendian=0) -> Image:
    return Image(header=header(stamp_ns, "camera"), height=height, width=width, encoding=encoding,
                 is_bigendian=bigendian, step=step, data=bytes(data))


def image_mutants(rng: np.random.Generator, stamp_ns: int) -> list[Mutant]:
    """One of each raw-image mutation (bad ones, plus odd-but-valid payloads that must still be captioned)."""
    w, h = 32, 24
    pixels = rng.integers(0, 256, w * h * 3, dtype=np.uint8).tobytes()
    mono16 = rng.integers(0, 65535, w * h, dtype=np.uint16).astype(">u2").tobytes()
    return [
        Mutant("unknown encoding", _raw(stamp_ns, "rgb9", w, h, w * 3, pixels), True),
        Mutant("empty encoding", _raw(stamp_ns, "", w, h, w * 3, pixels), True),
        Mutant("depth encoding (32FC1)", _raw(stamp_ns, "32FC1", w, h, w * 4, pixels + pixels[: w * h]), True),
        Mutant("yuyv with an odd width", _raw(stamp_ns, "yuyv", w - 1, h, w * 2, pixels), True),
        Mutant("bayer encoding", _raw(stamp_ns, "bayer_rggb8", w, h, w, pixels[: w * h]), False),
        Mutant("data shorter than height x step", _raw(stamp_ns, "rgb8", w, h, w * 3, pixels[: len(pixels) // 2]),
               True),
        Mutant("step smaller than a row", _raw(stamp_ns, "rgb8", w, h, w, pixels), True),
        Mutant("zero size", _raw(stamp_ns, "rgb8", 0, 0, 0, b""), True),
        Mutant("huge dimensions", _raw(stamp_ns, "rgb8", 100_000, 100_000, 300_000, pixels), True),
        Mutant("width x height overflow int32", _raw(stamp_ns, "mono8", 2**31 - 1, 2**31 - 1, 2**31 - 1, pixels),
               True),
        Mutant("big-endian mono16 (valid)", _raw(stamp_ns, "mono16", w, h, w * 2, mono16, bigendian=1), False),
        Mutant("padded rows (valid)", _raw(stamp_ns, "bgr8", w, h, w * 3 + 8,
                                           b"".join(pixels[r * w * 3:(r + 1) * w * 3] + bytes(8) for r in range(h))),
               False),
    ]


def compressed_mutants(rng: np.random.Generator, stamp_ns: int) -> list[Mutant]:
    jpeg = bytes(good_jpeg(rng, stamp_ns, 64, 48).data)
    png = bytes(make_compressed(stamp_ns, "camera", "png", 64, 48, seed=rng).data)

    def msg(fmt, data):
        return CompressedImage(header=header(stamp_ns, "camera"), format=fmt, data=data)

    corrupt = bytearray(jpeg)
    corrupt[2:200] = rng.integers(0, 256, 198, dtype=np.uint8).tobytes()
    return [
        Mutant("truncated jpeg", msg("jpeg", jpeg[: len(jpeg) // 3]), True),
        Mutant("jpeg header then garbage", msg("jpeg", bytes(corrupt)), True),
        Mutant("random bytes", msg("jpeg", rng.integers(0, 256, 500, dtype=np.uint8).tobytes()), True),
        Mutant("empty payload", msg("jpeg", b""), True),
        Mutant("png header, truncated", msg("png", png[:40]), True),
        Mutant("unsupported format", msg("tiff", jpeg), True),
        Mutant("compressedDepth", msg("16UC1; compressedDepth png", png), True),
        Mutant("png (valid)", msg("png", png), False),
    ]


def cloud(stamp_ns: int, columns: dict[str, np.ndarray], frame_id: str = "lidar", datatypes=None,
          point_step_delta: int = 0, row_step_delta: int = 0, truncate: int = 0, bigendian: bool = False):
    """make_cloud's packed cloud, then broken as asked: steps off by a delta, data cut short, a wrong endian flag."""
    msg = make_cloud(columns, frame_id, stamp_ns, datatypes=datatypes)
    msg.point_step += point_step_delta
    msg.row_step += row_step_delta
    if truncate:
        msg.data = bytes(msg.data)[: max(len(msg.data) - truncate, 0)]
    msg.is_bigendian = bigendian  # the bytes stay little-endian
    return msg


def good_lidar(rng: np.random.Generator, stamp_ns: int, n: int = 200) -> PointCloud2:
    xyz = rng.uniform(-30, 30, (n, 3)).astype(np.float32)
    return cloud(stamp_ns, {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})


def good_radar(rng: np.random.Generator, stamp_ns: int, n: int = 8) -> PointCloud2:
    xyz = rng.uniform(2, 60, (n, 3)).astype(np.float32)
    return cloud(stamp_ns, {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                            "velocity": rng.uniform(-20, 20, n).astype(np.float32),
                            "rcs": rng.uniform(-10, 20, n).astype(np.float32)}, frame_id="radar")


def cloud_mutants(rng: np.random.Generator, stamp_ns: int, radar: bool = False) -> list[Mutant]:
    n = 50
    xyz = rng.uniform(1, 40, (n, 3)).astype(np.float32)
    cols = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if radar:
        cols["velocity"] = rng.uniform(-10, 10, n).astype(np.float32)
    nan = {k: np.full(n, np.nan, np.float32) for k in ("x", "y", "z")}
    inf = {k: np.full(n, np.inf, np.float32) for k in ("x", "y", "z")}
    frame = "radar" if radar else "lidar"
    mutants = [
        Mutant("missing x field", cloud(stamp_ns, {"y": cols["y"], "z": cols["z"]}, frame), True),
        Mutant("x as uint8", cloud(stamp_ns, {**cols, "x": cols["x"].astype(np.uint8)}, frame,
                                   datatypes={"x": PointField.UINT8}), True),
        Mutant("unknown datatype", cloud(stamp_ns, cols, frame, datatypes={"x": 42}), True),
        Mutant("all NaN", cloud(stamp_ns, nan, frame), True),
        Mutant("all inf", cloud(stamp_ns, inf, frame), True),
        Mutant("point_step smaller than fields", cloud(stamp_ns, cols, frame, point_step_delta=-8), True),
        Mutant("data shorter than declared", cloud(stamp_ns, cols, frame, truncate=100), True),
        Mutant("row_step smaller than a row", cloud(stamp_ns, cols, frame, row_step_delta=-4), True),
        Mutant("big-endian flag on little-endian data (parses, garbage values)",
               cloud(stamp_ns, cols, frame, bigendian=True), False),
    ]
    if not radar:  # an empty radar cloud is a valid "nothing detected"
        mutants.append(Mutant("empty cloud", cloud(stamp_ns, {k: np.zeros(0, np.float32) for k in "xyz"}, frame),
                              True))
    return mutants
