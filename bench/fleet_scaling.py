"""caption-bags scaling on this machine: frames/s with 1 and 2 Ray workers (tiny model), and plain processes beside.

Generates `--drives` synthetic drives, then captions all of them (`--rate` captions per second of drive) with
caption_fleet on a local Ray with 1 and with 2 workers, interleaving the variants over `--repeats` rounds. For each
run it records Ray's start-up (ray.init), the fleet wall time (actor start and model load included) and the
captioning time inside the workers. As a baseline without Ray, the same bags are split over 1 and 2 plain
`python -m blip_caption_ros.caption_bag` processes per round.

What is measured: frames/s on this CPU machine (2 cores shared with other work: figures are noisy; medians and
ranges are printed), over the whole run (actor start and model load included) and per worker while captioning. What
is extrapolated: N workers, each as fast as one worker here, with no contention (workers share nothing but the
bag storage), and the same with the contention measured here; on GPUs, one GPU's per-worker rate replaces this
machine's. Bag reading, JPEG decoding and MCAP writing stay on each worker's CPU, so a cluster needs about one core
per GPU worker for them.

    python -m bench.fleet_scaling [--drives 6] [--seconds 4] [--repeats 2]
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
from blip_train.drives.fleet import caption_fleet, plan_drives, start_ray
from blip_train.drives.synthetic_drive import DriveConfig, write_drive
from blip_train.modeling import TINY, build_blip


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
    busy = {key: [r["frames"] / r["busy_s"] for r in results[key]] for key in ("ray1", "ray2")}  # per worker
    print(f"\n{args.drives} drives x {args.seconds:g} s at {args.rate:g} Hz = {frames} frames, 640x360, tiny model; "
          f"machine shared (median, range over {args.repeats} rounds)")
    print(f"{'variant':<20}{'frames/s (wall)':>22}{'per worker busy':>22}{'ray.init s':>22}")
    for key, label in (("ray1", "Ray, 1 worker"), ("ray2", "Ray, 2 workers"), ("proc1", "1 plain process"),
                       ("proc2", "2 plain processes")):
        worker = _stats(busy[key]) if key in busy else ""
        startup = _stats([r["startup_s"] for r in results[key]]) if key.startswith("ray") else ""
        print(f"{label:<20}{_stats(rate[key]):>22}{worker:>22}{startup:>22}")
    median = statistics.median
    print(f"2-worker speed-up (wall, actor start included): Ray {median(rate['ray2']) / median(rate['ray1']):.2f}x, "
          f"plain processes {median(rate['proc2']) / median(rate['proc1']):.2f}x (measured)")
    r1, efficiency = median(busy["ray1"]), median(busy["ray2"]) / median(busy["ray1"])
    print(f"per-worker captioning rate with 2 workers / with 1: {efficiency:.2f} (measured; 1.0 = no contention)")
    for n in args.gpus:
        print(f"extrapolated, {n} uncontended workers: ~{n * r1:.0f} frames/s (N x {r1:.2f}, this tiny model on one "
              f"core each); at this machine's contention ({efficiency:.2f}): ~{n * r1 * efficiency:.0f} frames/s; "
              "plus the one-off ray.init and actor start. On GPUs, replace the per-worker rate by one GPU's.")


if __name__ == "__main__":
    main()
