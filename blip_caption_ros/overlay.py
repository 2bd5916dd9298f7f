"""The caption drawn onto the camera image, for a human watching `<cam>/caption/image` in RViz or Foxglove."""

from __future__ import annotations

import textwrap

import numpy as np

OVERLAY_WIDTH = 640
"""Width caption-bag scales its overlays to: legible text on a small frame (a 64-px frame would otherwise be all
caption), and a captioned bag of 12 MP photos no larger than it needs to be for a viewer panel."""


def draw_caption(image_rgb: np.ndarray, text: str, width: int | None = None) -> np.ndarray:
    """A copy of `image_rgb` (H, W, 3 uint8) with `text` wrapped on a dark band along the bottom edge.

    `width`: scale the picture to this width first (aspect ratio kept); None keeps the source size (the node).
    """
    import cv2

    canvas = np.array(image_rgb, dtype=np.uint8, copy=True, order="C")
    if width is not None and canvas.shape[1] != width:
        height = max(1, round(canvas.shape[0] * width / canvas.shape[1]))
        shrinking = width < canvas.shape[1]
        canvas = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    height, width = canvas.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.35, width / 1280.0)
    thickness = max(1, round(scale * 2))
    (char_w, char_h), baseline = cv2.getTextSize("M", font, scale, thickness)
    chars_per_line = max(8, (width - 16) // max(char_w, 1))
    lines = textwrap.wrap(text, chars_per_line) or [""]
    line_h = char_h + baseline + 6
    top = max(0, height - line_h * len(lines) - 8)
    np.right_shift(canvas[top:], 2, out=canvas[top:])  # darken to a quarter: cheap on 1280x720
    for i, line in enumerate(lines):
        y = top + 6 + char_h + i * line_h
        cv2.putText(canvas, line, (8, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas
