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
    values = np.array([[0, 255, 256, 65535]], dtype=">u2" if bigendian else "<u2")
    data, step = _padded(values, 4)
    out = image_to_rgb("mono16", 1, 4, step, data, is_bigendian=bigendian)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_unsupported_encoding_is_named():
    with pytest.raises(ImageConversionError, match="'yuv422'"):
        image_to_rgb("yuv422", 2, 2, 4, bytes(8))


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
