"""`caption-bags`: caption many recorded drives on Ray, each exactly as `caption-bag` would.

Every input bag becomes `OUT/<bag name>`, the MCAP rosbag2 that `caption-bag BAG --out OUT/<bag name>` writes with
the same flags: the same function (blip_caption_ros.caption_bag.caption_bag) runs inside Ray actors, one per worker,
each holding one loaded captioner for all the bags it is given. Bags are handed out largest first to whichever
worker is free, so one long drive does not finish alone at the end. A bag that fails is retried (`--retries`), on a
fresh actor when the actor itself died, and then reported with its reason while the others go on. Outputs are written
atomically (`<name>.partial`, renamed when complete), so an existing output is a complete one: a rerun skips those
drives and a killed job resumes where it stopped.

Ray is an optional extra (`pip install blip_caption_ros[fleet]`); `caption-bag` never imports it. The local machine
is used unless `--address` names a running cluster; the dashboard is not started.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from blip_caption_ros.backends import CaptionerConfig
from blip_caption_ros.backends.caption_settings import CaptionSettingsError
from blip_caption_ros.caption_bag import add_caption_arguments, caption_options, captioner_config, note_overrides
from blip_caption_ros.progress import progress_bar

BAG_SUFFIXES = (".mcap", ".db3", ".bag")


class FleetError(RuntimeError):
    """A problem with the inputs or outputs of a fleet run, naming them."""


@dataclass(frozen=True)
class Drive:
    """One input bag of a fleet run and the captioned MCAP it becomes."""

    bag: Path
    out: Path
    size_bytes: int


@dataclass
class DriveResult:
    """How one drive went: frames captioned, inputs bad or failed, time taken, or the error that stopped it."""

    drive: Drive
    frames: int = 0
    bad_inputs: int = 0
    failed_frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    attempts: int = 0


@dataclass
class FleetSummary:
    done: list[DriveResult] = field(default_factory=list)
    failed: list[DriveResult] = field(default_factory=list)
    skipped: list[Drive] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.done)

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"drives: {len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} already complete; "
                f"{self.frames} frames in {self.seconds:.1f} s ({rate:.2f} frames/s)")


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix in BAG_SUFFIXES)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _bags_under(folder: Path) -> list[Path]:
    """Bags inside `folder`: rosbag2 directories (not descended into) and loose .mcap/.db3/.bag files."""
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        bag_dirs = [d for d in dirs if (root_path / d / "metadata.yaml").is_file()]
        found += [root_path / d for d in bag_dirs]
        dirs[:] = sorted(d for d in dirs if d not in bag_dirs and not d.endswith(".partial"))
        found += [root_path / f for f in files if Path(f).suffix in BAG_SUFFIXES]
    return sorted(found)


def find_bags(inputs: list[str]) -> list[Path]:
    """Bags named by `inputs`: bag directories or files, folders holding bags (searched recursively), or globs."""
    bags: list[Path] = []
    for item in inputs:
        matches = [Path(p) for p in sorted(glob.glob(item))] if glob.has_magic(item) else [Path(item)]
        if not matches:
            raise FleetError(f"{item}: matches no file or directory")
        for path in matches:
            if glob.has_magic(item) and path.name.endswith(".partial"):
                continue  # an output being written (or left by a killed run), not a finished bag
            if not path.exists():
                raise FleetError(f"{path}: no such file or directory")
            if _is_bag(path):
                bags.append(path)
            elif path.is_dir():
                found = _bags_under(path)
                if not found:
                    raise FleetError(f"{path}: a folder with no rosbag2 bags in it")
                bags.extend(found)
            else:
                raise FleetError(f"{path}: not a rosbag2 bag (a bag directory or a .mcap/.db3/.bag file)")
    return list(dict.fromkeys(p.resolve() for p in bags))


def plan_drives(bags: list[Path], out_dir: Path) -> list[Drive]:
    """One output per bag, `OUT/<bag name without suffix>`; largest bag first. Two bags with one name are an error."""
    names: dict[str, Path] = {}
    drives = []
    for bag in bags:
        name = bag.stem if bag.is_file() else bag.name
        if name in names:
            raise FleetError(f"{names[name]} and {bag} would both be written to {out_dir / name}; rename one")
        names[name] = bag
        drives.append(Drive(bag, out_dir / name, _size(bag)))
    return sorted(drives, key=lambda d: (-d.size_bytes, str(d.bag)))


class CaptionActor:
    """A Ray actor: loads one captioner once and captions the bags it is given with caption_bag.

    Errors come back as results naming their cause: this package's exceptions carry extra constructor arguments
    that Ray cannot rebuild on the driver, and a model that does not load must stop the run, not be retried per bag.
    """

    def __init__(self, config: CaptionerConfig, options: dict, threads: int):
        import torch

        from blip_caption_ros.backends import ModelLoadError, load_captioner

        torch.set_num_threads(threads)
        self.options = options
        self.captioner, self.load_error = None, None
        try:
            self.captioner = load_captioner(config)
            note_overrides(self.captioner, config)
        except (ModelLoadError, CaptionSettingsError, ValueError, OSError) as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"

    def caption(self, bag: str, out: str) -> dict:
        from blip_caption_ros.caption_bag import caption_bag

        if self.load_error:
            return {"load_error": self.load_error}
        start = time.perf_counter()
        try:
            stats = caption_bag(Path(bag), Path(out), self.captioner, **self.options)
        except Exception as exc:  # reported with its reason by the driver, then retried or counted as failed
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"frames": sum(stats.captioned.values()), "bad_inputs": sum(stats.bad_inputs.values()),
                "failed_frames": sum(stats.failed.values()), "seconds": time.perf_counter() - start}


def _reason(error: BaseException) -> str:
    """The error a task raised inside Ray, without Ray's wrapping traceback."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"


def caption_fleet(drives: list[Drive], config: CaptionerConfig, options: dict, *, workers: int = 1,
                  gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0, retries: int = 1,
                  progress: bool = True) -> FleetSummary:
    """Caption `drives` on the Ray instance this process is connected to (ray.init done by the caller)."""
    import ray
    from ray.exceptions import RayActorError

    summary = FleetSummary()
    todo = []
    for drive in drives:
        if drive.out.exists():
            summary.skipped.append(drive)
        else:
            todo.append(drive)
    if not todo:
        return summary
    remote_actor = ray.remote(CaptionActor).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
    threads = max(1, int(cpus_per_worker))

    def new_actor():
        return remote_actor.remote(config, options, threads)

    actors = [new_actor() for _ in range(min(workers, len(todo)))]
    queue = [DriveResult(drive) for drive in todo]
    running: dict = {}  # object ref -> (actor index, result)
    start = time.perf_counter()
    drives_bar = progress_bar(total=len(todo), desc="drives", unit="drive", disable=not progress, position=0)
    frames_bar = progress_bar(desc="frames", unit="frame", disable=not progress, position=1)

    def submit(index: int) -> None:
        result = queue.pop(0)
        result.attempts += 1
        running[actors[index].caption.remote(str(result.drive.bag), str(result.drive.out))] = (index, result)

    try:
        for index in range(len(actors)):
            if queue:
                submit(index)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            index, result = running.pop(ref)
            try:
                counts = ray.get(ref)
            except RayActorError as exc:  # the worker process died (out of memory, killed): replace it
                actors[index] = new_actor()
                _retry_or_fail(result, _reason(exc), retries, queue, summary, drives_bar)
            except ray.exceptions.RayError as exc:  # the task could not run or return
                _retry_or_fail(result, _reason(exc), retries, queue, summary, drives_bar)
            else:
                if "load_error" in counts:  # every bag would fail the same way
                    raise FleetError(f"a worker could not load the model: {counts['load_error']}")
                if "error" in counts:
                    _retry_or_fail(result, counts["error"], retries, queue, summary, drives_bar)
                else:
                    result.frames, result.bad_inputs = counts["frames"], counts["bad_inputs"]
                    result.failed_frames, result.seconds = counts["failed_frames"], counts["seconds"]
                    summary.done.append(result)
                    drives_bar.update(1)
                    frames_bar.update(result.frames)
                    frames_bar.set_postfix_str(f"{frames_bar.n / (time.perf_counter() - start):.2f} frames/s")
            if queue:
                submit(index)
    finally:
        drives_bar.close()
        frames_bar.close()
        for actor in actors:
            ray.kill(actor)
    summary.seconds = time.perf_counter() - start
    return summary


def _retry_or_fail(result: DriveResult, reason: str, retries: int, queue: list, summary: FleetSummary,
                   drives_bar) -> None:
    result.error = reason
    if result.attempts <= retries:
        queue.append(result)
        return
    summary.failed.append(result)
    drives_bar.update(1)
    tqdm.write(f"failed: {result.drive.bag} after {result.attempts} attempt(s): {reason}", file=sys.stderr)


def start_ray(address: str | None, workers: int, cpus_per_worker: float) -> None:
    """Connect to the cluster at `address`, or start Ray on this machine with enough CPU slots for the workers."""
    import ray

    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
             "logging_level": "ERROR"}
    if address:
        ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, int(workers * cpus_per_worker + 0.999)), **quiet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="caption-bags", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="bags (directories, .mcap or .db3), folders of bags, or globs")
    parser.add_argument("--out", type=Path, required=True, help="output folder: one MCAP rosbag2 per input")
    add_caption_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="Ray actors, each with one model copy (default 1)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs each worker reserves (0 on CPU; 0.5 puts two workers on a GPU); needs --device cuda")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0,
                        help="CPU slots (and torch threads) per worker (default 1)")
    parser.add_argument("--retries", type=int, default=1, help="attempts after the first for a failing drive")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. auto or ray://head:10001; default: start Ray locally)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    if args.gpus_per_worker < 0 or args.cpus_per_worker <= 0:
        parser.error("--gpus-per-worker must be >= 0 and --cpus-per-worker > 0")
    if args.gpus_per_worker > 0 and not args.device.startswith("cuda"):
        parser.error(f"--gpus-per-worker {args.gpus_per_worker:g} with --device {args.device}: pass --device cuda")
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: caption-bags needs Ray: pip install 'blip_caption_ros[fleet]' (or ray)", file=sys.stderr)
        return 2
    try:
        drives = plan_drives(find_bags(args.inputs), args.out)
        config = captioner_config(args)
        options = caption_options(args)
    except (FleetError, CaptionSettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"caption-bags: {len(drives)} drive(s) -> {args.out}, {args.workers} worker(s)", file=sys.stderr)
    import ray

    start_ray(args.address, args.workers, args.cpus_per_worker)
    try:
        summary = caption_fleet(drives, config, options, workers=args.workers,
                                gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                                retries=args.retries)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: complete outputs are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        ray.shutdown()
    for result in summary.failed:
        print(f"FAILED {result.drive.bag}: {result.error}", file=sys.stderr)
    for result in summary.done:
        if result.bad_inputs or result.failed_frames:
            print(f"note: {result.drive.bag}: {result.bad_inputs} bad inputs, {result.failed_frames} frames failed",
                  file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
