"""Crash-resume harness: `kill -9` blip-train mid-run, resume with `--resume auto`, compare with an unbroken run.

Trains a tiny random BLIP on generated frames on the CPU, three ways, with the same flags:
1. uninterrupted, to the end (the reference);
2. started, killed with SIGKILL `--kills` times at random points, each time restarted with `--resume auto`, and
   finally allowed to finish.
Kills alternate between two kinds: `between` lands mid-epoch between two checkpoints (the log shows steps after the
last checkpoint, which the resumed run must redo), `checkpoint` lands while a checkpoint is being written (a
`.last.tmp`/`.best.tmp` staging directory exists). After every kill a half-written staging directory holding a
bogus trainer state (step 999999) is planted beside `last`, and for `checkpoint` kills `last` is moved to `.last.old`
(the state a crash between the two renames of a commit leaves); the resumed run must start from the newest complete
checkpoint and never from a staging directory.

Reported (stdout, and `--json FILE`): for each kill the step it landed at and the checkpoint resumed from; the final
weights of both runs compared tensor by tensor (bitwise equal, max abs diff), the logged losses, and timings.
Exit status 0 when every check holds.

    python -m bench.crash_resume                        # 3 kills at random points (about a minute on 2 cores)
    python -m bench.crash_resume --kills 10 --seed 7 --json crash.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOGUS_STEP = 999_999


def train_command(data: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "blip_train.train", "--data_root", str(data), "--arch", "tiny",
            "--out_dir", str(out), "--cache_dir", str(out.parent / "cache"), "--batch_size", str(args.batch_size),
            "--epochs", str(args.epochs), "--eval_every", str(args.eval_every), "--lr", "1e-3",
            "--warmup_steps", "3", "--num_workers", "0", "--max_new_tokens", "8", "--log_every", "1",
            "--max_val_frames", "4", "--no-progress", "--resume", "auto", "--seed", str(args.seed)]


def environment() -> dict[str, str]:
    # One thread: the same reduction order in every run (CPU kernels are deterministic for a given thread count).
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_to_end(command: list[str], log_name: str, out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, cwd=REPO, timeout=900)
    seconds = time.perf_counter() - start
    (out.parent / f"{log_name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{log_name}: blip-train exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def read_log(out: Path) -> tuple[int, list[int]]:
    """(number of 'start' records, steps of the 'train' records) of the run's train_log.jsonl."""
    log = out / "train_log.jsonl"
    if not log.is_file():
        return 0, []
    starts, steps = 0, []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # cut short by the kill
        if record.get("kind") == "train":
            steps.append(record["step"])
        starts += record.get("kind") == "start"
    return starts, steps


def checkpoint_step(directory: Path) -> int | None:
    state = directory / "trainer_state.json"
    return json.loads(state.read_text())["global_step"] if state.is_file() else None


def run_and_kill(command: list[str], out: Path, kind: str, target: int, eval_every: int, log) -> dict:
    """Start training, SIGKILL it at `target` (a step, for `between`) or in a checkpoint write; what it left."""
    checkpoints = out / "checkpoints"
    starts_before = read_log(out)[0]
    process = subprocess.Popen(command, env=environment(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    start = time.perf_counter()
    staging_seen = False

    def reached() -> bool:  # by this process: its own 'start' record, then a step at or past `target`
        starts, steps = read_log(out)
        return starts > starts_before and bool(steps) and steps[-1] >= target

    try:
        while process.poll() is None:
            if kind == "between":
                if reached():
                    break
                time.sleep(0.002)
            else:  # a staging directory of the first checkpoint after `target`
                if any(p.is_dir() for p in (checkpoints / ".last.tmp", checkpoints / ".best.tmp")) and reached():
                    staging_seen = True
                    break
                time.sleep(0.0005)
        else:
            raise SystemExit(f"the run ended (exit {process.returncode}) before the {kind} kill at step {target}")
        os.kill(process.pid, signal.SIGKILL)
        killed_after = time.perf_counter() - start
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    steps = read_log(out)[1]
    last = checkpoints / "last"
    found = last if last.is_dir() else checkpoints / ".last.old"
    return {"kind": kind, "target_step": target, "killed_at_step": steps[-1] if steps else 0,
            "last_checkpoint_step": checkpoint_step(found), "staging_left": sorted(
                p.name for p in checkpoints.glob(".*.tmp")) if checkpoints.is_dir() else [],
            "staging_seen_before_kill": staging_seen, "seconds_to_kill": round(killed_after, 2),
            "between_checkpoints": bool(steps) and steps[-1] % eval_every != 0}


def plant_half_written_checkpoint(out: Path, move_last_aside: bool) -> None:
    """A staging directory with a truncated weight file and a bogus step; optionally `last` mid-commit."""
    checkpoints = out / "checkpoints"
    staging = checkpoints / ".last.tmp"
    last = checkpoints / "last"
    if not staging.is_dir() and last.is_dir():
        shutil.copytree(last, staging)
    if staging.is_dir():
        weights = staging / "model.safetensors"
        if weights.is_file():
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
        state = staging / "trainer_state.json"
        data = json.loads(state.read_text()) if state.is_file() else {}
        state.write_text(json.dumps({**data, "global_step": BOGUS_STEP}))
    if move_last_aside and last.is_dir():
        old = checkpoints / ".last.old"
        if old.exists():
            shutil.rmtree(old)
        last.rename(old)


def compare_weights(a: Path, b: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    left, right = load_file(a), load_file(b)
    if left.keys() != right.keys():
        return {"same_tensors": False, "bitwise_equal": False, "max_abs_diff": None}
    diffs = {name: float((left[name].double() - right[name].double()).abs().max()) for name in left}
    differing = sorted(name for name in left if not torch.equal(left[name], right[name]))
    return {"same_tensors": True, "tensors": len(left), "bitwise_equal": not differing,
            "differing_tensors": len(differing), "max_abs_diff": max(diffs.values()),
            "worst_tensor": max(diffs, key=diffs.get)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs before the run may finish")
    parser.add_argument("--frames", type=int, default=96, help="generated training frames")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval_every", type=int, default=10, help="checkpoint every N steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points (training uses it too)")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)

    from blip_train.datasets.synthetic import generate_dataset

    work = args.work or Path(tempfile.mkdtemp(prefix="crash_resume_"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    try:
        data = work / "data"
        if not data.is_dir():
            generate_dataset(data, args.frames, split="train", seed=1)
            generate_dataset(data, 4, split="val", seed=1)
        reference, crashed = work / "reference", work / "crashed"
        for out in (reference, crashed):
            shutil.rmtree(out, ignore_errors=True)
        steps_per_epoch = -(-args.frames // args.batch_size)
        total = steps_per_epoch * args.epochs

        reference_seconds, _ = run_to_end(train_command(data, reference, args), "reference", reference)
        print(f"reference: {total} steps in {reference_seconds:.1f} s")

        kills, resumes = [], []
        crash_start = time.perf_counter()
        # Kill points spread over the run, each after the previous one and never on a checkpoint step.
        span = range(args.eval_every + 1, total - 1)
        candidates = [s for s in span if s % args.eval_every not in (0, args.eval_every - 1)]
        targets = sorted(rng.sample(candidates, min(args.kills, len(candidates))))
        command = train_command(data, crashed, args)
        with (work / "crashed.log").open("w") as log:
            resumable = 0
            for i, target in enumerate(targets):
                kind = "between" if i % 2 == 0 else "checkpoint"
                # Past the step the restarted run resumes from, and still not a checkpoint step.
                target = max(target, resumable + 2)
                target += target % args.eval_every == 0
                kill = run_and_kill(command, crashed, kind, target, args.eval_every, log)
                plant_half_written_checkpoint(crashed, move_last_aside=kind == "checkpoint")
                kills.append(kill)
                resumable = kill["last_checkpoint_step"] or 0
                print(f"kill {i + 1} ({kind}): at step {kill['killed_at_step']}, newest complete checkpoint "
                      f"at step {kill['last_checkpoint_step']}")
        final_seconds, output = run_to_end(command, "crashed_final", crashed)
        crash_seconds = time.perf_counter() - crash_start
        for text in (work / "crashed.log").read_text().split("\n") + output.split("\n"):
            match = re.search(r"resumed from (\S+) at step (\d+)", text)
            if match:
                resumes.append({"from": match.group(1), "step": int(match.group(2))})

        comparison = compare_weights(reference / "checkpoints" / "last" / "model.safetensors",
                                     crashed / "checkpoints" / "last" / "model.safetensors")
        losses = {}
        for name, out in (("reference", reference), ("crashed", crashed)):
            records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
            losses[name] = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
        comparison["logged_losses_equal"] = losses["reference"] == losses["crashed"]
        comparison["logged_steps"] = sorted(losses["crashed"]) == list(range(1, total + 1))
        # The resumed runs after kill i start from the checkpoint kill i left: never from the planted staging one.
        expected = [k["last_checkpoint_step"] or 0 for k in kills]
        resumed_steps = [r["step"] for r in resumes]
        checks = {
            "bitwise_equal_weights": comparison["bitwise_equal"],
            "log_continuous_and_equal": comparison["logged_losses_equal"] and comparison["logged_steps"],
            "staging_never_resumed": all(".tmp" not in r["from"] and r["step"] != BOGUS_STEP for r in resumes),
            "resumed_from_newest_complete": [s for s in expected if s] == resumed_steps,
            "kills_between_checkpoints": all(k["between_checkpoints"] for k in kills if k["kind"] == "between"),
            "no_staging_left_at_end": not list((crashed / "checkpoints").glob(".*")),
        }
        report = {"total_steps": total, "eval_every": args.eval_every, "frames": args.frames,
                  "batch_size": args.batch_size, "reference_seconds": round(reference_seconds, 2),
                  "crashed_seconds": round(crash_seconds, 2), "final_resume_seconds": round(final_seconds, 2),
                  "kills": kills, "resumes": resumes, "comparison": comparison, "checks": checks}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report["comparison"], indent=1))
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    print(f"times: reference {report['reference_seconds']} s, killed {len(kills)}x and resumed "
          f"{report['crashed_seconds']} s in all")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
