"""imaging: every supported encoding, row padding, byte order, compressed frames, and the errors."""

import array

import cv2
import numpy as np
import pytest

from blip_caption_ros.imaging import ImageConversionError, compressed_to_rgb, image_to_rgb

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def _padded(pixels: np.ndarray, pad: int) -> tuple[bytes, int]:
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    step = rows.shape[1] + pad
    out = np.zeros((rows.shape[0], step), np.uint8)
    out[:, : rows.shape[1]] = rows
    return out.tobytes(), step


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    ("encoding", "pixels"),
    [
        ("rgb8", RGB),
        ("bgr8", RGB[:, :, ::-1]),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])),
        ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
    ],
)
def test_colour_encodings_give_rgb(encoding, pixels, pad):
    data, step = _padded(np.ascontiguousarray(pixels), pad)
    out = image_to_rgb(encoding, 6, 5, step, data)
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_replicated_to_three_channels():
    gray = RGB[:, :, 0].copy()
    data, step = _padded(gray, 2)
    out = image_to_rgb("mono8", 6, 5, step, array.array("B", data))  # rclpy gives array.array
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_scaled_like_cv_bridge_in_either_byte_order(bigendian):
    values = np.array([[0, 128, 129, 255, 256, 65535]], dtype=">u2" if bigendian else "<u2")
    data, step = _padded(values, 4)
    out = image_to_rgb("mono16", 1, 6, step, data, is_bigendian=bigendian)
    # cv_bridge: convertTo(CV_8U, 255/65535), i.e. round(v / 257)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 1, 255])
    assert (out[..., 0] == out[..., 2]).all()


# cv_bridge's conversion of each encoding to rgb8, written out from its source (cv_bridge.cpp getConversionCodes,
# toCvCopyImpl, cvtColorForDisplay) as the OpenCV reference these tests compare against.
CV_BRIDGE_CODES = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB, "rgb16": None, "bgr16": cv2.COLOR_BGR2RGB,
    "rgba16": cv2.COLOR_RGBA2RGB, "bgra16": cv2.COLOR_BGRA2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    "bayer_rggb16": cv2.COLOR_BayerBG2RGB, "bayer_bggr16": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg16": cv2.COLOR_BayerGR2RGB, "bayer_grbg16": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
    "8UC1": cv2.COLOR_GRAY2RGB, "8UC3": cv2.COLOR_BGR2RGB, "8UC4": cv2.COLOR_BGRA2RGB,
    "16UC1": cv2.COLOR_GRAY2RGB, "16UC3": cv2.COLOR_BGR2RGB, "16UC4": cv2.COLOR_BGRA2RGB,
}


def _layout(encoding: str) -> tuple[int, type]:
    if encoding.startswith(("bayer", "mono")) or encoding.endswith("C1"):
        channels = 1
    elif encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        channels = 2
    else:
        channels = 4 if "a" in encoding.replace("bayer", "") or encoding.endswith("C4") else 3
    return channels, np.uint16 if "16" in encoding else np.uint8


def _cv_bridge_reference(encoding: str, pixels: np.ndarray) -> np.ndarray:
    code = CV_BRIDGE_CODES[encoding]
    out = pixels if code is None else cv2.cvtColor(pixels, code)
    if out.dtype == np.uint16:
        out = np.clip(np.rint(out.astype(np.float64) * 255.0 / 65535.0), 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize("encoding", sorted(CV_BRIDGE_CODES))
@pytest.mark.parametrize(("height", "width", "pad"), [(6, 8, 0), (6, 8, 6), (7, 10, 2), (5, 7, 4)])
def test_every_cv_bridge_encoding_matches_opencv(encoding, height, width, pad):
    channels, dtype = _layout(encoding)
    if channels == 2 and width % 2:
        pytest.skip("YUV 4:2:2 has no odd widths (refused below)")
    info = np.iinfo(dtype)
    shape = (height, width, channels) if channels > 1 else (height, width)
    pixels = RNG.integers(0, info.max + 1, shape, dtype=dtype)
    data, step = _padded(pixels, pad)
    out = image_to_rgb(encoding, height, width, step, data)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    reference = _cv_bridge_reference(encoding, pixels)
    if encoding.startswith("bayer") and encoding.endswith("16"):
        # demosaiced after scaling to 8 bit (cv_bridge: before), so each value may round the other way
        assert np.abs(out.astype(int) - reference).max() <= 1
    else:
        np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("encoding", ["rgb16", "bgra16", "bayer_gbrg16", "16UC1"])
def test_16_bit_big_endian_frames_equal_their_little_endian_twins(encoding):
    channels, _ = _layout(encoding)
    pixels = RNG.integers(0, 65536, (4, 6, channels), dtype=np.uint16).squeeze(-1 if channels == 1 else None)
    big, step = _padded(pixels.astype(">u2"), 4)
    little, _ = _padded(pixels.astype("<u2"), 4)
    np.testing.assert_array_equal(image_to_rgb(encoding, 4, 6, step, big, is_bigendian=True),
                                  image_to_rgb(encoding, 4, 6, step, little))


@pytest.mark.parametrize(("encoding", "layout"), [
    ("bayer_rggb8", "RG/GB"), ("bayer_bggr8", "BG/GR"), ("bayer_gbrg8", "GB/RG"), ("bayer_grbg8", "GR/BG"),
    ("bayer_rggb16", "RG/GB"), ("bayer_grbg16", "GR/BG")])
def test_bayer_patterns_reproduce_a_flat_colour(encoding, layout):
    """Independent of OpenCV's pattern naming: a mosaic of one colour in the named 2x2 layout demosaics to it."""
    colour = {"R": 200, "G": 120, "B": 40}
    scale = 257 if encoding.endswith("16") else 1
    cell = np.array([[colour[c] for c in row] for row in layout.split("/")], np.uint16) * scale
    mosaic = np.tile(cell, (4, 5)).astype(np.uint16 if scale > 1 else np.uint8)
    data, step = _padded(mosaic, 2)
    out = image_to_rgb(encoding, 8, 10, step, data)
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3), [[200, 120, 40]] * 24, atol=1)


@pytest.mark.parametrize("encoding, order", [("uyvy", "UYVY"), ("yuyv", "YUYV")])
def test_yuv422_byte_order(encoding, order):
    """BT.601 limited range: Y=81 U=90 V=240 is pure red, Y=235 U=V=128 white (1x2 pixel pairs)."""
    pairs = []
    for y, u, v in [(81, 90, 240), (235, 128, 128)]:
        pairs.append([{"Y": y, "U": u, "V": v}[c] for c in order])
    data = np.array(pairs, np.uint8).reshape(2, 4)  # two rows, one pixel pair each
    out = image_to_rgb(encoding, 2, 2, 4, data.tobytes()).astype(int)
    np.testing.assert_allclose(out[0], [[255, 0, 0]] * 2, atol=3)
    np.testing.assert_allclose(out[1], [[255, 255, 255]] * 2, atol=3)


def _nv420(height, width, chroma_first_v: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = RNG.integers(16, 236, (height, width), dtype=np.uint8)
    u = RNG.integers(16, 241, (height // 2, width // 2), dtype=np.uint8)
    v = RNG.integers(16, 241, (height // 2, width // 2), dtype=np.uint8)
    chroma = np.dstack([v, u] if chroma_first_v else [u, v]).reshape(height // 2, width)
    return np.vstack([y, chroma]), u, v


@pytest.mark.parametrize(("encoding", "code"), [("nv12", cv2.COLOR_YUV2RGB_NV12), ("nv21", cv2.COLOR_YUV2RGB_NV21)])
@pytest.mark.parametrize("pad", [0, 6])
def test_nv12_nv21_match_opencv_with_row_padding(encoding, code, pad):
    planes, _, _ = _nv420(6, 8, encoding == "nv21")
    data, step = _padded(planes, pad)
    np.testing.assert_array_equal(image_to_rgb(encoding, 6, 8, step, data), cv2.cvtColor(planes, code))


@pytest.mark.parametrize("pad", [0, 4])
def test_nv24_equals_nv12_of_the_same_chroma(pad):
    """NV24 (full-resolution chroma) with chroma repeated over 2x2 blocks is the NV12 frame of that chroma, so it
    converts like OpenCV's NV12 (same BT.601 matrix; OpenCV rounds in fixed point: +-2)."""
    planes, u, v = _nv420(6, 8, False)
    y = planes[:6]
    uv_full = np.dstack([np.kron(u, np.ones((2, 2), np.uint8)), np.kron(v, np.ones((2, 2), np.uint8))])
    height, width = y.shape
    step = width + pad
    buffer = np.zeros(height * step + height * 2 * step, np.uint8)
    buffer[: height * step].reshape(height, step)[:, :width] = y
    buffer[height * step:].reshape(height, 2 * step)[:, : 2 * width] = uv_full.reshape(height, 2 * width)
    out = image_to_rgb("nv24", height, width, step, buffer.tobytes()).astype(int)
    np.testing.assert_allclose(out, cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_NV12).astype(int), atol=2)


@pytest.mark.parametrize(("encoding", "height", "width", "step", "size", "match"), [
    ("yuyv", 4, 5, 10, 40, "YUV 4:2:2 needs an even width"),
    ("yuv422", 4, 3, 6, 24, "yuv422 image 3x4: YUV 4:2:2 needs an even width"),
    ("nv12", 5, 4, 4, 40, "nv12 image 4x5: YUV 4:2:0 needs an even width and height"),
    ("nv21", 4, 5, 6, 40, "needs an even width"),
    ("nv12", 4, 4, 4, 20, "nv12 image 4x4 .step 4. needs 24 bytes, got 20"),
    ("nv24", 4, 4, 4, 40, "nv24 image 4x4 .step 4. needs 48 bytes, got 40"),
    ("bayer_rggb16", 4, 4, 6, 64, "step 6 < 8"),
    ("16UC3", 2, 2, 12, 20, "needs 24 bytes, got 20"),
])
def test_malformed_sizes_are_refused_by_name(encoding, height, width, step, size, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(encoding, height, width, step, bytes(size))


@pytest.mark.parametrize("encoding", ["32FC1", "yuv420", "8SC3", ""])
def test_unsupported_encoding_is_named(encoding):
    with pytest.raises(ImageConversionError, match=f"unsupported image encoding '{encoding}'"):
        image_to_rgb(encoding, 2, 2, 16, bytes(32))


@pytest.mark.parametrize(
    ("height", "width", "step", "size", "match"),
    [(2, 2, 5, 12, "step 5 < 6"), (2, 2, 6, 11, "needs 12 bytes, got 11"), (0, 2, 6, 0, "empty size")],
)
def test_inconsistent_size_is_refused(height, width, step, size, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb("rgb8", height, width, step, bytes(size))


@pytest.mark.parametrize(("fmt", "ext"), [("jpeg", ".jpg"), ("rgb8; jpeg compressed bgr8", ".jpg"), ("png", ".png")])
def test_compressed_frames_decode_to_rgb(fmt, ext):
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = (255, 0, 0)  # red on the left, in RGB
    ok, encoded = cv2.imencode(ext, image[:, :, ::-1])
    assert ok
    out = compressed_to_rgb(fmt, encoded.tobytes())
    assert out.shape == (24, 32, 3)
    assert out[12, 4, 0] > 200 and out[12, 4, 2] < 50
    assert out[12, 28].max() < 50


@pytest.mark.parametrize(
    ("fmt", "data", "match"),
    [
        ("jpeg", b"\xff\xd8 certainly not a jpeg", "could not be decoded"),
        ("jpeg", b"", "is empty"),
        ("16UC1; compressedDepth png", b"\x89PNG", "unsupported compressed image format"),
        ("theora", b"abc", "unsupported compressed image format 'theora'"),
    ],
)
def test_bad_compressed_frames_raise_domain_error(fmt, data, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_to_rgb(fmt, data)
