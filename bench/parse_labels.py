"""Parse + caption benchmark at the size of BDD100K's det_20 train split (~70k frames, ~1.3M boxes).

Generates a det_20 file of that size (random boxes, the released keys and nesting), then times, on one core:
reading + parsing it into frame records, and captioning every frame. Prints the figures; the goal is < 10 s total.

    python bench/parse_labels.py [--frames 69863] [--boxes-per-frame 18.6] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from blip_train.bdd100k import DET20_CATEGORIES, load_frames
from blip_train.captions import caption_frame
from blip_train.synthetic import SCENES, TIMES_OF_DAY, WEATHERS

LIGHT = ("NA", "G", "Y", "R")


def write_det20(path: Path, n_frames: int, boxes_per_frame: float, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(boxes_per_frame, n_frames)
    total = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i, n in enumerate(counts.tolist()):
            xs = rng.uniform(0, 1280, (n, 2))
            ys = rng.uniform(0, 720, (n, 2))
            cats = rng.integers(0, len(DET20_CATEGORIES), n)
            labels = []
            for j in range(n):
                cat = DET20_CATEGORIES[cats[j]]
                labels.append({
                    "id": str(total + j), "category": cat,
                    "attributes": {"occluded": bool(j % 3 == 0), "truncated": bool(j % 7 == 0),
                                   "trafficLightColor": LIGHT[j % 4] if cat == "traffic light" else "NA"},
                    "manualShape": True,
                    "box2d": {"x1": float(xs[j].min()), "y1": float(ys[j].min()),
                              "x2": float(xs[j].max()), "y2": float(ys[j].max())},
                    "poly2d": None, "box3d": None,
                })
            total += n
            frame = {"videoName": f"{i:08x}-bench", "name": f"{i:08x}-bench.jpg", "frameIndex": 0, "timestamp": 10000,
                     "labels": labels,
                     "attributes": {"weather": WEATHERS[i % len(WEATHERS)], "timeofday": TIMES_OF_DAY[i % 3],
                                    "scene": SCENES[i % len(SCENES)]}}
            f.write(("," if i else "") + json.dumps(frame))
        f.write("]")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=69863, help="frames (det_20 train has 69,863)")
    parser.add_argument("--boxes-per-frame", type=float, default=18.6, help="mean boxes per frame")
    parser.add_argument("--keep", type=Path, help="write the generated file here and keep it")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the goal says

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "det_train.json"
        t0 = time.perf_counter()
        n_boxes = write_det20(path, args.frames, args.boxes_per_frame)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {args.frames} frames, {n_boxes} boxes, {size_mb:.0f} MB in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        frames, report = load_frames(path)
        t_parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        captions = [caption_frame(frame) for frame in frames]
        t_caption = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = t_parse + t_caption
    print(f"parse:   {t_parse:6.2f} s  ({report.boxes / t_parse / 1e6:.2f} M boxes/s)")
    print(f"caption: {t_caption:6.2f} s  ({len(captions) / t_caption:,.0f} frames/s)")
    print(f"total:   {total:6.2f} s on one core (goal < 10 s: {'met' if total < 10 else 'MISSED'}); "
          f"peak RSS {peak_mb:,.0f} MB")
    return 0 if total < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
