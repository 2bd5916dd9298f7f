"""Camera messages -> RGB numpy arrays, without cv_bridge.

cv_bridge is not available everywhere this package runs (PyPI-only machines, offline tools reading bags), and the
captioner only needs RGB uint8, so every encoding cv_bridge converts (plus the 4:2:0/4:4:4 semi-planar frames of
hardware pipelines) is turned into RGB here with numpy views and OpenCV's cvtColor, with cv_bridge's meaning:
the same cvtColor codes per Bayer pattern and YUV order, 16 bit scaled by 255/65535 with rounding (its `convertTo`;
16-bit Bayer is scaled before demosaicing: within 1 of cv_bridge, 3x faster),
and the generic 8UC1/8UC3/8UC4/16UC1/16UC3/16UC4 read as mono8/bgr8/bgra8/mono16/bgr16/bgra16, as its
`cvtColorForDisplay` (rqt_image_view) does. Anything else is an `ImageConversionError` naming the encoding, format
or size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .input_limits import IMAGE_PIXELS, InputTooLargeError, encoded_image_size


@dataclass(frozen=True)
class RawEncoding:
    """How a `sensor_msgs/Image` encoding is laid out and turned into RGB.

    layout: "packed" (channels values per pixel), "yuv422" (2 bytes per pixel, pixel pairs share chroma: even width),
    "nv420" (Y plane + interleaved chroma at half resolution: even width and height), "nv24" (Y plane + interleaved
    chroma at full resolution, chroma rows 2 x step). to_rgb: the cvtColor code, None when already RGB.
    """

    layout: str
    channels: int
    dtype: str
    to_rgb: int | None


def _packed(channels: int, dtype: str, code: int | None) -> RawEncoding:
    return RawEncoding("packed", channels, dtype, code)


RAW_ENCODINGS: dict[str, RawEncoding] = {
    "rgb8": _packed(3, "u1", None),
    "bgr8": _packed(3, "u1", cv2.COLOR_BGR2RGB),
    "rgba8": _packed(4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": _packed(4, "u1", cv2.COLOR_BGRA2RGB),
    "mono8": _packed(1, "u1", cv2.COLOR_GRAY2RGB),
    "mono16": _packed(1, "u2", cv2.COLOR_GRAY2RGB),
    "rgb16": _packed(3, "u2", None),
    "bgr16": _packed(3, "u2", cv2.COLOR_BGR2RGB),
    "rgba16": _packed(4, "u2", cv2.COLOR_RGBA2RGB),
    "bgra16": _packed(4, "u2", cv2.COLOR_BGRA2RGB),
    # cv_bridge's pattern -> OpenCV code table (OpenCV names a pattern by its second row)
    **{f"bayer_{pattern}{bits}": _packed(1, "u1" if bits == 8 else "u2", code)
       for pattern, code in (("rggb", cv2.COLOR_BayerBG2RGB), ("bggr", cv2.COLOR_BayerRG2RGB),
                             ("gbrg", cv2.COLOR_BayerGR2RGB), ("grbg", cv2.COLOR_BayerGB2RGB))
       for bits in (8, 16)},
    "uyvy": RawEncoding("yuv422", 2, "u1", cv2.COLOR_YUV2RGB_UYVY),
    "yuv422": RawEncoding("yuv422", 2, "u1", cv2.COLOR_YUV2RGB_UYVY),  # deprecated name of uyvy
    "yuyv": RawEncoding("yuv422", 2, "u1", cv2.COLOR_YUV2RGB_YUY2),
    "yuv422_yuy2": RawEncoding("yuv422", 2, "u1", cv2.COLOR_YUV2RGB_YUY2),  # deprecated name of yuyv
    "nv12": RawEncoding("nv420", 1, "u1", cv2.COLOR_YUV2RGB_NV12),
    "nv21": RawEncoding("nv420", 1, "u1", cv2.COLOR_YUV2RGB_NV21),
    "nv24": RawEncoding("nv24", 1, "u1", None),
}
#: generic OpenCV types, read the way cv_bridge's cvtColorForDisplay reads them
GENERIC_ENCODINGS = {"8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8", "16UC1": "mono16", "16UC3": "bgr16",
                     "16UC4": "bgra16"}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
SCALE_16_TO_8 = 255.0 / 65535.0  # cv_bridge: convertTo(CV_8U, 255/65535), rounded and saturated
# BT.601 limited range, the matrix of OpenCV's NV12/NV21 conversion, for NV24 (which OpenCV has no code for):
# rgb = M @ (y, u, v, 1)
_YUV444_TO_RGB = np.array([
    [1.164, 0.0, 1.596, -1.164 * 16 - 1.596 * 128],
    [1.164, -0.391, -0.813, -1.164 * 16 + (0.391 + 0.813) * 128],
    [1.164, 2.018, 0.0, -1.164 * 16 - 2.018 * 128],
], dtype=np.float32)


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array (encoding, size or payload)."""


def supported_encodings() -> list[str]:
    return [*RAW_ENCODINGS, *GENERIC_ENCODINGS]


def image_to_rgb(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """A `sensor_msgs/Image` payload as an (height, width, 3) uint8 RGB array.

    `step` may exceed the packed row size (row padding); `data` is any buffer (bytes, array.array, memoryview).
    rgb8 without padding is returned as a read-only view of `data`; other encodings are converted into a new array.
    """
    spec = RAW_ENCODINGS.get(GENERIC_ENCODINGS.get(encoding, encoding))
    if spec is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(supported_encodings())}"
        )
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"{encoding} image has an empty size {width}x{height}")
    _check_pixels(width, height, encoding)
    if spec.layout == "yuv422" and width % 2:
        raise ImageConversionError(f"{encoding} image {width}x{height}: YUV 4:2:2 needs an even width")
    if spec.layout == "nv420" and (width % 2 or height % 2):
        raise ImageConversionError(f"{encoding} image {width}x{height}: YUV 4:2:0 needs an even width and height")
    dtype = np.dtype(spec.dtype).newbyteorder(">" if is_bigendian else "<")
    row_bytes = width * spec.channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"{encoding} image {width}x{height}: step {step} < {row_bytes} bytes per row")
    # rows of `step` bytes: the image itself, then the chroma plane of the semi-planar formats
    rows, last_row = {"nv420": (height * 3 // 2, row_bytes), "nv24": (height * 3, row_bytes)}.get(
        spec.layout, (height, row_bytes))
    buffer = memoryview(data).cast("B")
    if len(buffer) < step * (rows - 1) + last_row:
        raise ImageConversionError(
            f"{encoding} image {width}x{height} (step {step}) needs {step * rows} bytes, got {len(buffer)}"
        )
    if spec.layout == "nv420":
        planes = np.ndarray((rows, width), np.uint8, buffer, strides=(step, 1))
        return cv2.cvtColor(planes, spec.to_rgb)
    if spec.layout == "nv24":
        return _nv24_to_rgb(buffer, height, width, step)
    pixels = np.ndarray(
        shape=(height, width, spec.channels), dtype=dtype, buffer=buffer,
        strides=(step, spec.channels * dtype.itemsize, dtype.itemsize),
    )
    if is_bigendian and dtype.itemsize > 1:
        pixels = pixels.astype(dtype.newbyteorder("="))
    if dtype.itemsize > 1:
        # scale to 8 bit first, so that cvtColor runs on 8-bit values: exact for the channel reorders (they commute
        # with a per-value scale); Bayer is then demosaiced at 8 bit (cv_bridge demosaics at 16 and then scales,
        # 3x slower), which can round one value the other way.
        pixels = cv2.convertScaleAbs(pixels, alpha=SCALE_16_TO_8).reshape(height, width, spec.channels)
    if spec.to_rgb is None:
        rgb = pixels if step == row_bytes or dtype.itemsize > 1 else np.ascontiguousarray(pixels)
    else:
        rgb = cv2.cvtColor(pixels if spec.channels > 1 else pixels[:, :, 0], spec.to_rgb)
    return rgb


def _nv24_to_rgb(buffer: memoryview, height: int, width: int, step: int) -> np.ndarray:
    """NV24 (Y plane, then interleaved U,V at full resolution) with the BT.601 limited-range matrix OpenCV uses for
    NV12/NV21: one affine cv2.transform over the (y, u, v) pixels."""
    y = np.ndarray((height, width), np.uint8, buffer, strides=(step, 1))
    uv = np.ndarray((height, width, 2), np.uint8, buffer, offset=height * step, strides=(2 * step, 2, 1))
    return cv2.transform(cv2.merge([y, uv]), _YUV444_TO_RGB)


def compressed_to_rgb(image_format: str, data) -> np.ndarray:
    """A `sensor_msgs/CompressedImage` (jpeg or png, as image_transport's compressed plugin writes) as RGB uint8.

    `image_format` is the message's `format` field, e.g. "jpeg", "png" or "rgb8; jpeg compressed bgr8";
    compressedDepth and anything that is not JPEG/PNG are refused.
    """
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
