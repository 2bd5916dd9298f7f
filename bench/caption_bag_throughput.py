"""caption-bag throughput on CPU: frames/s for a tiny and a full-size (BLIP-base, random weights) model.

Generates a synthetic 1280x720 drive, then captions every frame of its first seconds with each model through
`caption_bag` (decode, caption, sensor matching, overlay, MCAP writing: the whole offline path). Random weights give
the real cost of the architecture, not real captions. Prints frames/s per model and the ratio between them.

    python -m bench.caption_bag_throughput [--seconds 2] [--threads 2] [--skip-full]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from blip_caption_ros.backends import CaptionerConfig, load_captioner
from blip_caption_ros.caption_bag import caption_bag
from blip_train.captions import caption_vocabulary
from blip_train.drives.synthetic_drive import DriveConfig, write_drive
from blip_train.modeling import BLIP_BASE, TINY, build_blip


def measure(name: str, arch, drive: Path, root: Path, max_new_tokens: int) -> float:
    model_dir = root / f"model_{name}"
    # Full size gets a BERT-base-sized vocabulary, so the output layer costs what it really costs.
    words = caption_vocabulary() if arch is TINY else [f"w{i}" for i in range(30_000)]
    build_blip(words, model_dir, arch=arch)
    captioner = load_captioner(CaptionerConfig(model=str(model_dir), max_new_tokens=max_new_tokens))
    start = time.perf_counter()
    stats = caption_bag(drive, root / f"out_{name}", captioner, rate_hz=0)
    elapsed = time.perf_counter() - start
    frames = sum(stats.captioned.values())
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:>9}: {frames} frames in {elapsed:6.1f} s -> {frames / elapsed:6.2f} frames/s "
          f"({stats.inference_s / frames * 1e3:7.1f} ms inference per frame; peak RSS so far {rss_mb:,.0f} MB)")
    return frames / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="drive length at 10 Hz camera (default 2 s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="caption length (default 20)")
    parser.add_argument("--skip-full", action="store_true", help="only the tiny model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_drive(root / "drive", DriveConfig(duration_s=args.seconds))
        tiny = measure("tiny", TINY, root / "drive", root, args.max_new_tokens)
        if not args.skip_full:
            full = measure("BLIP-base", BLIP_BASE, root / "drive", root, args.max_new_tokens)
            print(f"tiny / BLIP-base throughput ratio: {tiny / full:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
