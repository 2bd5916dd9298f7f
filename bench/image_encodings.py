"""Conversion time of one 1920x1080 camera frame per encoding (blip_caption_ros.imaging.image_to_rgb), on one core.

    python -m bench.image_encodings [--repeats 30] [--width 1920 --height 1080]

Prints a table: median and spread (p10-p90) in milliseconds per encoding, over repeats interleaved across the
encodings (so a busy neighbour slows every encoding alike), with OpenCV limited to one thread. The target from the
issue: <= 5 ms for Bayer and YUV.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from blip_caption_ros.imaging import GENERIC_ENCODINGS, RAW_ENCODINGS, image_to_rgb

TARGET_MS = 5.0


def frame(encoding: str, width: int, height: int, rng: np.random.Generator) -> tuple[bytes, int]:
    spec = RAW_ENCODINGS[GENERIC_ENCODINGS.get(encoding, encoding)]
    step = width * spec.channels * np.dtype(spec.dtype).itemsize
    rows = {"nv420": height * 3 // 2, "nv24": height * 3}.get(spec.layout, height)
    return rng.integers(0, 256, step * rows, dtype=np.uint8).tobytes(), step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    encodings = [*RAW_ENCODINGS, *GENERIC_ENCODINGS]
    frames = {e: frame(e, args.width, args.height, rng) for e in encodings}
    times: dict[str, list[float]] = {e: [] for e in encodings}
    for encoding in encodings:  # warm-up
        image_to_rgb(encoding, args.height, args.width, frames[encoding][1], frames[encoding][0])
    for _ in range(args.repeats):
        for encoding in encodings:
            data, step = frames[encoding]
            start = time.perf_counter()
            image_to_rgb(encoding, args.height, args.width, step, data)
            times[encoding].append((time.perf_counter() - start) * 1e3)
    print(f"{args.width}x{args.height}, {args.repeats} repeats, cv2 {cv2.__version__}, 1 OpenCV thread")
    print(f"| encoding | median ms | p10-p90 ms | <= {TARGET_MS:g} ms |")
    print("|---|---|---|---|")
    for encoding in encodings:
        p10, p50, p90 = np.percentile(times[encoding], [10, 50, 90])
        print(f"| {encoding} | {p50:.2f} | {p10:.2f}-{p90:.2f} | {'yes' if p50 <= TARGET_MS else 'NO'} |")


if __name__ == "__main__":
    main()
