"""RGB frames -> the model's pixel_values: one transform for training, evaluation and every backend.

The vehicle must publish the captions that were evaluated, so a frame takes the same path to the vision tower
everywhere: resized to the model's input size with OpenCV's area interpolation (an antialiased box filter; what
blip_train's image cache stores), then rescaled and normalised with the processor's mean/std in float32. A frame
already at the input size is not resampled.

Why not BlipImageProcessor itself: it resizes with PIL bicubic and normalises in float64, so its pixels differ from
the training cache's by a few units and in the last bits, which is enough to flip a greedy token now and then.
Only its settings (size, rescale factor, mean, std) are read from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame at `size` (height, width): area interpolation; unchanged when it fits."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class ImageSpec:
    """The pixel transform a processor describes: input size (height, width), rescale factor and mean/std."""

    size: tuple[int, int]
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, processor, image_size: int | None = None) -> ImageSpec:
        """From a BlipProcessor (or its image_processor); `image_size` (the vision config's) overrides the size."""
        image_processor = getattr(processor, "image_processor", processor)
        size = image_processor.size
        height, width = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
        if image_size is not None:
            height = width = image_size
        rescale = image_processor.rescale_factor if image_processor.do_rescale else 1.0
        if image_processor.do_normalize:
            mean, std = tuple(image_processor.image_mean), tuple(image_processor.image_std)
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return cls((int(height), int(width)), float(rescale), tuple(map(float, mean)), tuple(map(float, std)))

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        return resize_rgb(rgb, self.size)

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) at the input size -> float32 (B, 3, H, W), as the processor's pixel_values."""
        pixels = batch.astype(np.float32) * np.float32(self.rescale)
        pixels -= np.asarray(self.mean, dtype=np.float32)
        pixels /= np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))

    def pixel_values(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames of any size -> float32 (B, 3, H, W)."""
        return self.normalise(np.stack([self.resize(image) for image in images]))


def model_pixels(processor, images: Sequence[np.ndarray]) -> np.ndarray:
    """What every backend feeds the vision tower for RGB uint8 frames of any size: float32 (B, 3, H, W)."""
    return ImageSpec.from_processor(processor).pixel_values(images)
