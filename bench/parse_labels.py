"""Parse + caption benchmark at the size of the released label files, one core.

Generates, with the released keys, nesting and column layout:
  det_20 train       ~70k frames, ~1.3M boxes (random boxes, the released        BDD100K labels/det_20/det_train.json
                     category frequencies)
  BDD-X              ~7k videos, ~3.8 segments each (sentences from the real     BDD-X-Annotations_v1.csv
                     sample's 61-column layout, shuffled)
  Cityscapes gtFine  2,975 train polygon files, ~60 objects each (stuff and      gtFine/train/<city>/*_polygons.json
                     things, polygons of 8-120 vertices)
then times reading + parsing each into records and captioning every frame (BDD-X: every segment sentence and the
still sentences at 10 s). Each source is parsed in a fresh process pinned to one core, so its peak RSS (ru_maxrss)
is its own and no heap is left over from generating the files. Prints per-source seconds, the total (goal <= 10 s
for all together) and peak RSS.

    python -m bench.parse_labels [--frames 69863] [--boxes-per-frame 18.6] [--bddx-videos 6984]
                                 [--cityscapes-files 2975] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from blip_train.captions import caption_frame
from blip_train.datasets.bdd100k import load_frames
from blip_train.datasets.bddx import MAX_SEGMENTS, load_bddx, still_sentences
from blip_train.datasets.cityscapes import LABEL_TO_CATEGORY, STUFF_LABELS, load_cityscapes
from blip_train.datasets.records import DET20_CATEGORIES
from blip_train.datasets.synthetic import DRAWN_SCENES, DRAWN_TIMES_OF_DAY, DRAWN_WEATHERS

LIGHT = ("NA", "G", "Y", "R")
#: Approximate box counts per category in BDD100K's train labels (BDD100K paper, Fig. 4; det_20 is within a few %):
#: a few groups per frame, mostly cars, signs and lights.
DET20_TRAIN_COUNTS = {
    "car": 714_000, "traffic sign": 240_000, "traffic light": 186_000, "pedestrian": 92_000, "truck": 30_000,
    "bus": 11_700, "bicycle": 7_200, "rider": 4_500, "motorcycle": 3_000, "other vehicle": 900, "other person": 200,
    "trailer": 70, "train": 140,
}
BDDX_SAMPLE = Path("/work/shared/samples/bddx_Sample.csv")
#: Used when the real sample is not at hand: its first rows' sentences.
FALLBACK_SEGMENTS = [
    ("The car accelerates", "because the light has turned green."),
    ("The car is moving at a steady speed", "because traffic is clear."),
    ("The car slows slightly", "because it's turning into the right lane."),
    ("The car stops", "because it turns to the right."),
    ("The car is stopped.", "The car is at an intersection with a red light."),
]
CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg", "hanover", "jena",
          "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen", "ulm", "weimar", "zurich")
THING_LABELS = (*LABEL_TO_CATEGORY, "cargroup", "persongroup", "bicyclegroup")


def write_det20(path: Path, n_frames: int, boxes_per_frame: float, seed: int = 0, uniform: bool = False) -> int:
    """A det_20 train file; categories drawn with the released split's frequencies (or uniformly)."""
    rng = np.random.default_rng(seed)
    counts_by_name = {name: 1.0 for name in DET20_CATEGORIES} if uniform else DET20_TRAIN_COUNTS
    weights = np.array([counts_by_name[name] for name in DET20_CATEGORIES], dtype=float)
    weights /= weights.sum()
    counts = rng.poisson(boxes_per_frame, n_frames)
    total = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i, n in enumerate(counts.tolist()):
            xs = rng.uniform(0, 1280, (n, 2))
            ys = rng.uniform(0, 720, (n, 2))
            cats = rng.choice(len(DET20_CATEGORIES), n, p=weights)
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
                     "attributes": {"weather": DRAWN_WEATHERS[i % len(DRAWN_WEATHERS)],
                                    "timeofday": DRAWN_TIMES_OF_DAY[i % 3],
                                    "scene": DRAWN_SCENES[i % len(DRAWN_SCENES)]}}
            f.write(("," if i else "") + json.dumps(frame))
        f.write("]")
    return total


def bddx_header_and_segments() -> tuple[list[str], list[tuple[str, str]]]:
    """The 61-column header and (action, justification) pairs of the real sample (or the built-in few)."""
    header = ["Input.Video"] + [f"Answer.{k}{part}" for k in range(1, MAX_SEGMENTS + 1)
                                for part in ("start", "end", "action", "justification")]
    if not BDDX_SAMPLE.is_file():
        return header, FALLBACK_SEGMENTS
    with BDDX_SAMPLE.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    pairs = [(row[f"Answer.{k}action"], row[f"Answer.{k}justification"]) for row in rows
             for k in range(1, MAX_SEGMENTS + 1) if row.get(f"Answer.{k}action")]
    return header, pairs


def write_bddx(path: Path, n_videos: int, seed: int = 0) -> int:
    """A BDD-X CSV of `n_videos` rows (release: 6,984 videos, ~26k segments); returns the segment count."""
    rng = np.random.default_rng(seed)
    header, pairs = bddx_header_and_segments()
    total = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(n_videos):
            n = int(np.clip(rng.poisson(3.8), 1, MAX_SEGMENTS))
            cuts = np.sort(rng.choice(np.arange(1, 40), n - 1, replace=False)) if n > 1 else np.array([], int)
            bounds = [0, *cuts.tolist(), 40]
            row = [f"https://s3-us-west-2.amazonaws.com/sq8geewpqu/samples-1k/{i:08x}-{i * 7919 % 2**32:08x}.mov"]
            for k in range(n):
                action, justification = pairs[int(rng.integers(len(pairs)))]
                row += [bounds[k], bounds[k + 1], action, justification]
            row += [""] * (len(header) - len(row))
            writer.writerow(row)
            total += n
    return total


def _polygon(rng, n_vertices: int, width: int = 2048, height: int = 1024) -> list[list[int]]:
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    radius = rng.uniform(10, 400)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    xs = np.clip(cx + radius * np.cos(angles), 0, width - 1).astype(int)
    ys = np.clip(cy + radius * np.sin(angles), 0, height - 1).astype(int)
    return np.stack([xs, ys], 1).tolist()


def write_cityscapes(root: Path, n_files: int, seed: int = 0) -> int:
    """gtFine/train polygon files (~60 objects: ~20 stuff polygons of 40-120 vertices, ~40 things of 8-40)."""
    rng = np.random.default_rng(seed)
    stuff = sorted(STUFF_LABELS)
    objects_total = 0
    for i in range(n_files):
        city = CITIES[i % len(CITIES)]
        folder = root / "gtFine" / "train" / city
        folder.mkdir(parents=True, exist_ok=True)
        objects = [{"label": stuff[int(rng.integers(len(stuff)))], "polygon": _polygon(rng, int(rng.integers(40, 121)))}
                   for _ in range(rng.poisson(20))]
        objects += [{"label": THING_LABELS[int(rng.integers(len(THING_LABELS)))],
                     "polygon": _polygon(rng, int(rng.integers(8, 41)))} for _ in range(rng.poisson(40))]
        objects_total += len(objects)
        data = {"imgHeight": 1024, "imgWidth": 2048, "objects": objects}
        (folder / f"{city}_{i:06d}_000019_gtFine_polygons.json").write_text(json.dumps(data), encoding="utf-8")
    return objects_total


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _parse_bddx(path: Path):
    videos, report = load_bddx(path)
    return videos, report.segments, "segments"


def _caption_bddx(videos) -> int:
    sentences = [segment.sentence for video in videos for segment in video.segments]
    return len(sentences) + sum(map(len, still_sentences(videos).values()))


def _parse_cityscapes(path: Path):
    frames, report = load_cityscapes(path, "train")
    return frames, report.boxes, "boxes"


def _parse_det20(path: Path):
    frames, report = load_frames(path)
    return frames, report.boxes, "boxes"


def _caption_frames(frames) -> int:
    return len([caption_frame(frame) for frame in frames])


SOURCES = {"BDD-X": (_parse_bddx, _caption_bddx), "Cityscapes": (_parse_cityscapes, _caption_frames),
           "det_20": (_parse_det20, _caption_frames)}


def measure(source: str, path: Path) -> dict:
    """Parse + caption one source in this (fresh) process; its peak RSS is this source's alone."""
    parse, caption = SOURCES[source]
    t0 = time.perf_counter()
    items, count, unit = parse(path)
    t_parse = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_captions = caption(items)
    t_caption = time.perf_counter() - t0
    return {"source": source, "parse_s": t_parse, "caption_s": t_caption, "count": count, "unit": unit,
            "captions": n_captions, "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=69863, help="det_20 frames (det_20 train has 69,863)")
    parser.add_argument("--boxes-per-frame", type=float, default=18.6, help="mean boxes per frame")
    parser.add_argument("--uniform-categories", action="store_true",
                        help="draw det_20 categories uniformly (more groups per caption: a slower worst case)")
    parser.add_argument("--bddx-videos", type=int, default=6984, help="BDD-X rows (the release has 6,984 videos)")
    parser.add_argument("--cityscapes-files", type=int, default=2975, help="gtFine train files (2,975)")
    parser.add_argument("--keep", type=Path, help="write the generated files into this directory and keep them")
    parser.add_argument("--measure", nargs=2, metavar=("SOURCE", "PATH"), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the goal says; children too
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"BDD-X": folder / "BDD-X-Annotations_v1.csv", "Cityscapes": folder / "cityscapes",
                 "det_20": folder / "det_train.json"}
        t0 = time.perf_counter()
        n_boxes = write_det20(paths["det_20"], args.frames, args.boxes_per_frame, uniform=args.uniform_categories)
        n_segments = write_bddx(paths["BDD-X"], args.bddx_videos)
        n_objects = write_cityscapes(paths["Cityscapes"], args.cityscapes_files)
        city_mb = sum(p.stat().st_size for p in paths["Cityscapes"].rglob("*.json")) / 1e6
        print(f"generated in {time.perf_counter() - t0:.0f} s: det_20 {args.frames} frames, {n_boxes} boxes, "
              f"{paths['det_20'].stat().st_size / 1e6:.0f} MB; BDD-X {args.bddx_videos} videos, {n_segments} "
              f"segments, {paths['BDD-X'].stat().st_size / 1e6:.1f} MB; Cityscapes {args.cityscapes_files} files, "
              f"{n_objects} objects, {city_mb:.0f} MB")
        rows = []
        for source, path in paths.items():  # each in a fresh process: no heap left over from generation
            done = subprocess.run([sys.executable, "-m", __spec__.name, "--measure", source, str(path)], check=True,
                                  capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"{'source':<11} {'parse s':>8} {'caption s':>10} {'total s':>8}  {'items':>19}  {'captions':>9}  "
          f"{'peak RSS MB':>11}")
    for row in rows:
        print(f"{row['source']:<11} {row['parse_s']:8.2f} {row['caption_s']:10.2f} "
              f"{row['parse_s'] + row['caption_s']:8.2f}  {row['count']:>10,} {row['unit']:<8} "
              f"{row['captions']:>9,}  {row['peak_rss_mb']:11,.0f}")
    total = sum(row["parse_s"] + row["caption_s"] for row in rows)
    print(f"total:      {total:6.2f} s on one core for all three (goal <= 10 s: {'met' if total <= 10 else 'MISSED'}); "
          f"peak RSS {max(row['peak_rss_mb'] for row in rows):,.0f} MB (det_20, one process per source)")
    return 0 if total <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
