"""Size limits for untrusted inputs: bag messages and images (the dataset files' limits are in
blip_train.datasets.records, on the same `Limit`).

Bags come from elsewhere and are parsed in full, so each reader refuses input far beyond anything
real before it allocates for it, with an error that names the file, the size and the variable that raises the limit.
Every default is a generous multiple of the largest real input; set the environment variable to change one
(a plain integer, read when the check runs).

    BLIP_MAX_BAG_MESSAGE_BYTES  one serialised bag message (a 4K rgb8 frame is 25 MB)        default 256 MiB
    BLIP_MAX_IMAGE_PIXELS       width x height of a camera image, checked before decoding    default 64 Mpx
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class InputTooLargeError(ValueError):
    """An input over its size limit; the message names it, its size, the limit and how to raise it."""


@dataclass(frozen=True)
class Limit:
    env: str
    default: int
    unit: str = "bytes"

    def value(self) -> int:
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise InputTooLargeError(f"{self.env}={raw!r} is not an integer") from None
        if value <= 0:
            raise InputTooLargeError(f"{self.env}={raw!r} must be positive")
        return value

    def check(self, size: int, what: str) -> None:
        """Raise InputTooLargeError when `size` exceeds the limit; `what` names the input ("path: label file")."""
        limit = self.value()
        if size > limit:
            raise InputTooLargeError(f"{what} is {size} {self.unit}, over the limit of {limit} {self.unit} "
                                     f"(set {self.env} to raise it)")


BAG_MESSAGE_BYTES = Limit("BLIP_MAX_BAG_MESSAGE_BYTES", 256 << 20)
IMAGE_PIXELS = Limit("BLIP_MAX_IMAGE_PIXELS", 64_000_000, "pixels")


def encoded_image_size(payload: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None when the header is not recognised.

    OpenCV's own guard (CV_IO_MAX_IMAGE_PIXELS) allows 2^30 pixels, 3 GB of RGB; a few hundred bytes of crafted JPEG
    can ask for that much.
    """
    data = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if position + 9 > len(data):
                return None
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return width, height
        position += 2 + length
    return None
