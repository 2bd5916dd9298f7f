"""caption-bags scaling on this machine: frames/s with 1 and 2 Ray workers (tiny model), and plain processes beside.

Generates `--drives` synthetic drives, then captions all of them (`--rate` captions per second of drive) with
caption_fleet on a local Ray with 1 and with 2 workers, interleaving the variants over `--repeats` rounds. For each
run it records Ray's start-up (ray.init), the fleet wall time (actor start and model load included) and the
captioning time inside the workers. As a baseline without Ray, the same bags are split over 1 and 2 plain
`python -m blip_caption_ros.caption_bag` processes per round.

What is measured: frames/s on this CPU machine (2 cores shared with other work: figures are noisy; medians and
ranges are printed). What is extrapolated: the N-GPU figure assumes each worker owns a GPU, that the per-worker rate
stays what one worker reaches here, scaled by the 2-worker efficiency measured here; bag reading, JPEG decoding and
MCAP writing stay on each worker's CPU, so a real cluster needs about one core per GPU worker for them.

    python bench/fleet_scaling.py [--drives 6] [--seconds 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from blip_caption_ros.backends import CaptionerConfig
from blip_train.captions import caption_vocabulary
from blip_train.fleet import caption_fleet, plan_drives, start_ray
from blip_train.modeling import TINY, build_blip
from blip_train.synthetic_drive import DriveConfig, write_drive


def ray_run(drives, model: Path, out: Path, workers: int, rate: float) -> dict:
    import ray

    start = time.perf_counter()
    start_ray(None, workers, 1.0)
    started = time.perf_counter()
    try:
        summary = caption_fleet(plan_drives(drives, out), CaptionerConfig(model=str(model), max_new_tokens=12),
                                {"rate_hz": rate}, workers=workers, progress=False)
    finally:
        ray.shutdown()
    assert not summary.failed, [r.error for r in summary.failed]
    return {"startup_s": started - start, "wall_s": summary.seconds, "frames": summary.frames,
            "busy_s": sum(r.seconds for r in summary.done)}


def process_run(drives, model: Path, out: Path, workers: int, rate: float) -> dict:
    """The same bags over `workers` plain processes, each calling caption-bag's main per bag (as a shell loop over
    caption-bag would: the model is loaded once per bag)."""
    out.mkdir(parents=True)
    groups = [drives[i::workers] for i in range(workers)]
    script = ("import sys; from blip_caption_ros.caption_bag import main\n"
              "for bag in sys.argv[2:]:\n"
              "    assert main([bag, '--out', sys.argv[1] + '/' + bag.rsplit('/', 1)[-1], '--model', "
              f"'{model}', '--max-new-tokens', '12', '--rate', '{rate}']) == 0\n")
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per worker, as each Ray actor gets
    jobs = [subprocess.Popen([sys.executable, "-c", script, str(out), *map(str, group)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for group in groups]
    codes = [job.wait() for job in jobs]
    assert codes == [0] * workers, codes
    return {"wall_s": time.perf_counter() - start}


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drives", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each drive")
    parser.add_argument("--rate", type=float, default=2.0, help="captions per second of drive")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpus", type=int, nargs="*", default=[8, 64], help="N for the extrapolation")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        run_all(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_all(args: argparse.Namespace, root: Path) -> None:
    model = root / "model"
    build_blip(caption_vocabulary(), model, arch=TINY)
    drives = []
    for i in range(args.drives):
        drives.append(root / "bags" / f"drive{i}")
        write_drive(drives[-1], DriveConfig(duration_s=args.seconds, width=640, height=360, seed=i))
    results: dict[str, list[dict]] = {}
    for round_ in range(args.repeats):
        for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
            run = ray_run(drives, model, root / f"ray{workers}_{round_}", workers, args.rate)
            results.setdefault(f"ray{workers}", []).append(run)
            print(f"round {round_}: Ray, {workers} worker(s): {run['frames']} frames in {run['wall_s']:.1f} s "
                  f"(+{run['startup_s']:.1f} s ray.init)", flush=True)
            run = process_run(drives, model, root / f"proc{workers}_{round_}", workers, args.rate)
            results.setdefault(f"proc{workers}", []).append(run)
            print(f"round {round_}: {workers} plain process(es): {run['wall_s']:.1f} s", flush=True)
    frames = results["ray1"][0]["frames"]
    rate = {key: [frames / r["wall_s"] for r in runs] for key, runs in results.items()}
    per_worker_busy = [r["frames"] / r["busy_s"] for r in results["ray1"]]
    print(f"\n{args.drives} drives x {args.seconds:g} s at {args.rate:g} Hz = {frames} frames, 640x360, tiny model; "
          f"machine shared (median, range over {args.repeats} rounds)")
    print(f"{'variant':<26}{'frames/s':>22}{'ray.init s':>22}")
    for key, label in (("ray1", "Ray, 1 worker"), ("ray2", "Ray, 2 workers"), ("proc1", "1 plain process"),
                       ("proc2", "2 plain processes")):
        startup = _stats([r["startup_s"] for r in results[key]]) if key.startswith("ray") else ""
        print(f"{label:<26}{_stats(rate[key]):>22}{startup:>22}")
    speedup_ray = statistics.median(rate["ray2"]) / statistics.median(rate["ray1"])
    speedup_proc = statistics.median(rate["proc2"]) / statistics.median(rate["proc1"])
    print(f"2-worker speed-up: Ray {speedup_ray:.2f}x, plain processes {speedup_proc:.2f}x (measured)")
    efficiency = speedup_ray / 2
    busy = statistics.median(per_worker_busy)
    print(f"one worker while captioning: {busy:.2f} frames/s (measured, actor start excluded)")
    for n in args.gpus:
        print(f"extrapolated, {n} GPU workers: ~{n * busy * efficiency:.0f} frames/s of this model "
              f"(= {n} x {busy:.2f} x efficiency {efficiency:.2f}; assumes one free core per worker and storage "
              "that keeps up)")


if __name__ == "__main__":
    main()
