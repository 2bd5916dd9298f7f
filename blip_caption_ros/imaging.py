"""Camera messages -> RGB numpy arrays, without cv_bridge.

cv_bridge is not available everywhere this package runs (PyPI-only machines, offline tools reading bags), and the
captioner only needs RGB uint8, so the handful of encodings cameras actually publish are converted here with numpy
views (no per-pixel Python) and OpenCV for compressed frames. Everything else is an `ImageConversionError` that names
the offending encoding or format.
"""

from __future__ import annotations

import numpy as np

from .input_limits import IMAGE_PIXELS, InputTooLargeError, encoded_image_size

#: encoding -> (channels, numpy dtype); dtype byte order is applied from `is_bigendian`.
RAW_ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "u1"),
    "bgr8": (3, "u1"),
    "rgba8": (4, "u1"),
    "bgra8": (4, "u1"),
    "mono8": (1, "u1"),
    "mono16": (1, "u2"),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array (encoding, size or payload)."""


def image_to_rgb(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """A `sensor_msgs/Image` payload as an (height, width, 3) uint8 RGB array.

    `step` may exceed the packed row size (row padding); `data` is any buffer (bytes, array.array, memoryview).
    rgb8 without padding is returned as a read-only view of `data`; other encodings are copied. mono16 is scaled to
    8 bit as cv_bridge does (value / 256).
    """
    if encoding not in RAW_ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(RAW_ENCODINGS)}"
        )
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"{encoding} image has an empty size {width}x{height}")
    _check_pixels(width, height, encoding)
    channels, kind = RAW_ENCODINGS[encoding]
    dtype = np.dtype(kind).newbyteorder(">" if is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"{encoding} image {width}x{height}: step {step} < {row_bytes} bytes per row")
    buffer = memoryview(data).cast("B")
    if len(buffer) < step * (height - 1) + row_bytes:
        raise ImageConversionError(
            f"{encoding} image {width}x{height} (step {step}) needs {step * height} bytes, got {len(buffer)}"
        )
    pixels = np.ndarray(
        shape=(height, width, channels), dtype=dtype, buffer=buffer,
        strides=(step, channels * dtype.itemsize, dtype.itemsize),
    )
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    if encoding in ("mono8", "mono16"):
        return np.repeat(pixels, 3, axis=2)
    if encoding == "rgb8":
        return pixels if step == row_bytes else np.ascontiguousarray(pixels)
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[:, :, :3])
    return np.ascontiguousarray(pixels[:, :, 2::-1])  # bgr8 / bgra8 -> rgb


def compressed_to_rgb(image_format: str, data) -> np.ndarray:
    """A `sensor_msgs/CompressedImage` (jpeg or png, as image_transport's compressed plugin writes) as RGB uint8.

    `image_format` is the message's `format` field, e.g. "jpeg", "png" or "rgb8; jpeg compressed bgr8";
    compressedDepth and anything that is not JPEG/PNG are refused.
    """
    import cv2

    lowered = image_format.lower()
    if "compresseddepth" in lowered or not any(name in lowered for name in COMPRESSED_FORMATS):
        raise ImageConversionError(f"unsupported compressed image format {image_format!r}; expected jpeg or png")
    payload = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if payload.size == 0:
        raise ImageConversionError(f"compressed image ({image_format!r}) is empty")
    size = encoded_image_size(payload)
    if size is not None:
        _check_pixels(*size, f"compressed ({image_format!r})")
    bgr = cv2.imdecode(payload, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(f"compressed image ({image_format!r}, {payload.size} bytes) could not be decoded")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _check_pixels(width: int, height: int, what: str) -> None:
    """Refuse absurd sizes before anything is allocated for them (BLIP_MAX_IMAGE_PIXELS, see input_limits)."""
    try:
        IMAGE_PIXELS.check(width * height, f"{what} image {width}x{height}")
    except InputTooLargeError as exc:
        raise ImageConversionError(str(exc)) from None
