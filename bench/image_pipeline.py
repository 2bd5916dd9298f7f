"""Image pipeline benchmark: 1280x720 JPEG -> 384x384 model input, per core, against the processor's PIL path.

Frames are drawn by blip_train.datasets.synthetic (the training data generator) and written as JPEG at quality 90, like
BDD100K stills. Timed, each over the same files (warm page cache: decode cost only, no disk):

  processor  PIL open + BlipImageProcessor (PIL backend: resize bicubic, rescale, normalise) -> pixel_values;
             the baseline, what a plain HF script does per image
  cv2        blip_train.data.read_image (cv2 decode, INTER_AREA resize, BGR->RGB) + ImageSpec.normalise, the path
             blip-train takes without a cache, on one core
  loader     the same through torch DataLoader (CaptionDataset over ImageSet, CaptionCollator normalising in the
             workers, as blip-train does) with 1 and 2 worker processes, one core each
  memmap     rows of the pre-resized uint8 cache (data.prepare_images, the default) + normalise

and, from the per-core rate, how many cores feeding a GPU at --target images/s takes.

    python -m bench.image_pipeline [--images 96] [--passes 3] [--size 384] [--target 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from blip_train.data import CaptionCollator, CaptionDataset, ImageSet, ImageSpec, prepare_images, read_image
from blip_train.datasets.synthetic import generate_dataset

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # BLIP's (CLIP's) values


def _one_thread(_: int = 0) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def rate(fn, n_images: int, passes: int) -> float:
    """Images per second of `fn()` (which handles `n_images`), best of `passes` after one warm-up."""
    fn()
    best = min(_timed(fn) for _ in range(passes))
    return n_images / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="distinct frames to draw (default 96)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes; the best counts (default 3)")
    parser.add_argument("--size", type=int, default=384, help="model input size in pixels (BLIP-base: 384)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (DataLoader and the in-process paths)")
    parser.add_argument("--target", type=float, default=400.0, help="GPU consumption to feed, images/s")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    one_core = {cores[0]}
    from PIL import Image
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    processor = BlipImageProcessorPil(size={"height": args.size, "width": args.size}, image_mean=MEAN, image_std=STD)
    spec = ImageSpec((args.size, args.size), 1 / 255, MEAN, STD)
    size = spec.size

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(tmp, args.images, split="train", seed=0)
        paths = sorted((Path(tmp) / "images" / "100k" / "train").glob("*.jpg"))
        kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        h, w = cv2.imread(str(paths[0])).shape[:2]
        print(f"drew {len(paths)} {w}x{h} JPEGs (q90, {kb:.0f} KB avg) in {time.perf_counter() - t0:.1f} s; "
              f"target {size[1]}x{size[0]}; cores available: {len(cores)}")
        reduced = size[0] <= 720 // 2 and size[1] <= 1280 // 2
        print(f"read_image's IMREAD_REDUCED_* decode {'applies' if reduced else 'does not apply'} at {size[0]} px "
              f"(a 1/2-scale decode of 720 rows gives 360)")

        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, one_core)
        _one_thread()
        results: dict[str, float] = {}

        def processor_path():
            for path in paths:
                with Image.open(path) as image:
                    processor(images=image.convert("RGB"), return_tensors="pt")

        def cv2_path():
            for start in range(0, len(paths), args.batch):
                batch = np.stack([read_image(p, size) for p in paths[start:start + args.batch]])
                spec.normalise(batch)

        def cv2_decode_only():
            for path in paths:
                read_image(path, size)

        results["processor (PIL, baseline)"] = rate(processor_path, len(paths), args.passes)
        results["cv2 read_image + normalise"] = rate(cv2_path, len(paths), args.passes)
        results["cv2 read_image only"] = rate(cv2_decode_only, len(paths), args.passes)

        cached, _ = prepare_images(paths, size, cache_dir=Path(tmp) / "cache", workers=1)

        def memmap_path():
            for start in range(0, len(paths), args.batch):
                batch = np.stack([cached[i] for i in range(start, min(start + args.batch, len(paths)))])
                spec.normalise(batch)

        results["memmap cache + normalise"] = rate(memmap_path, len(paths), args.passes)

        loader_rates = {}
        for workers in (1, 2):
            if hasattr(os, "sched_setaffinity"):  # workers inherit the affinity: one core each
                os.sched_setaffinity(0, set(cores[:workers]) if len(cores) >= workers else set(cores))
            dataset = CaptionDataset(ImageSet(paths, size))
            loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, num_workers=workers,
                                                 collate_fn=CaptionCollator(spec, with_text=False),
                                                 worker_init_fn=_one_thread, persistent_workers=True)

            def loader_path(loader=loader):
                for _ in loader:  # workers decode, resize and normalise (the collator), as in blip-train
                    pass

            loader_rates[workers] = rate(loader_path, len(paths), args.passes)
            del loader
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(cores))

    baseline = results["processor (PIL, baseline)"]
    print(f"\n{'path':<34} {'images/s':>9} {'per core':>9} {'vs PIL':>7}")
    for name, value in results.items():
        print(f"{name:<34} {value:9.1f} {value:9.1f} {value / baseline:6.2f}x")
    for workers, value in loader_rates.items():
        used = min(workers, len(cores))
        print(f"{f'DataLoader, {workers} worker(s), cv2':<34} {value:9.1f} {value / used:9.1f} "
              f"{value / used / baseline:6.2f}x")
    if len(cores) < 2:
        print("(one core available: the 2-worker figure shares it)")
    print(f"\nfeeding a GPU at {args.target:g} images/s ({size[0]} px):")
    for name in ("processor (PIL, baseline)", "cv2 read_image + normalise", "memmap cache + normalise"):
        per_core = results[name]
        print(f"  {name:<32} {args.target:g} / {per_core:.1f} per core = {args.target / per_core:5.1f} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
