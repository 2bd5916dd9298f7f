"""DDP on CPU (torchrun, gloo): 2 processes x batch B train like 1 process x batch 2B; resume; NaN agreement.

Why not bitwise: one process sums the gradient of 2B samples inside its matmuls; two processes each sum B and gloo
adds the two halves. Float addition is not associative, so the gradients differ in the last bits (~1e-7 relative)
and Adam carries that on. The tolerance below is what those rounding differences grow to over these steps; a real
disagreement (another sample order, per-process instead of global token averaging, dropout masks) is 1e-3 or more.
BLIP's configs have no dropout (hidden, attention: 0.0), so the processes' RNG streams do not enter the result.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blip_train.checkpoint import TrainerState
from blip_train.train import train
from test.support import REPO
from test.training_helpers import read_log, tiny_args, tiny_config

pytestmark = pytest.mark.slow

#: Max abs weight difference allowed between 1 x batch 8 and 2 x batch 4 after 6 AdamW steps at lr 1e-3.
DDP_ATOL = 1e-5
COMMON = ("--epochs", "2", "--schedule", "constant", "--max_val_frames", "4", "--eval_every", "3")


@pytest.fixture(scope="module")
def dataset(synthetic_bdd) -> Path:
    return synthetic_bdd(24, 4, seed=2)  # 3 global batches of 8 per epoch


def torchrun(args: list[str], script: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "blip_train.train"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target, *args]
    return subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True,
                          text=True, timeout=180, cwd=REPO)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / "last" / "model.safetensors")


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def two_process_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun(tiny_args(dataset, out, *COMMON, "--batch_size", "4"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_two_processes_train_like_one_with_the_same_global_batch(dataset, tmp_path, two_process_run):
    one = train(tiny_config(dataset, tmp_path / "one", *COMMON, "--batch_size", "8"), say=lambda _: None)
    start = next(r for r in read_log(two_process_run) if r["kind"] == "start")
    assert (start["processes"], start["global_batch"], start["total_steps"]) == (2, 8, 6)
    assert one.state.global_step == TrainerState.load(two_process_run / "checkpoints" / "last").global_step == 6
    initial = load_file(tmp_path / "one" / "init" / "model.safetensors")
    single, ddp = weights(tmp_path / "one"), weights(two_process_run)
    moved = max_abs_diff(initial, single)
    diff = max_abs_diff(single, ddp)
    print(f"1x8 vs 2x4: max abs weight diff {diff:.2e} (training moved weights by up to {moved:.2e})")
    assert moved > 1e-3  # the comparison is not vacuous
    assert diff < DDP_ATOL
    # The logged loss is the mean of per-process batch means: equal to the single run's up to token weighting.
    single_losses = {r["step"]: r["loss"] for r in read_log(tmp_path / "one") if r["kind"] == "train"}
    ddp_losses = {r["step"]: r["loss"] for r in read_log(two_process_run) if r["kind"] == "train"}
    assert ddp_losses == pytest.approx(single_losses, rel=0.05)


def test_ddp_stop_and_resume_matches_the_uninterrupted_run(dataset, tmp_path, two_process_run):
    out = tmp_path / "run"
    # Step 4 of 6 is mid-epoch (3 steps per epoch): each process resumes 1 batch into its shard of epoch 2.
    first = torchrun(tiny_args(dataset, out, *COMMON, "--batch_size", "4", "--max_steps", "4"))
    assert first.returncode == 0, first.stderr[-3000:]
    state = TrainerState.load(out / "checkpoints" / "last")
    assert (state.global_step, state.epoch, state.batch_in_epoch) == (4, 1, 1)
    second = torchrun(tiny_args(dataset, out, *COMMON, "--batch_size", "4", "--resume", "auto"))
    assert second.returncode == 0, second.stderr[-3000:]
    diff = max_abs_diff(weights(out), weights(two_process_run))
    print(f"2-process resume vs uninterrupted: max abs weight diff {diff:.2e}")
    assert diff == 0.0  # the same processes, the same reduction order: bitwise
    assert [r["step"] for r in read_log(out) if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_ranks_agree_on_a_nonfinite_loss_only_one_of_them_sees(dataset, tmp_path):
    # Rank 1's 2nd batch is corrupt; rank 0's loss is finite. No clipping, so no gradient norm gives it away: only
    # the reduced flag keeps rank 0 from applying the NaN gradients that the all-reduce handed it too.
    out = tmp_path / "skip"
    env = {"BLIP_NAN_CALLS": "2", "BLIP_NAN_RANK": "1"}
    flags = tiny_args(dataset, out, *COMMON, "--batch_size", "4", "--max_grad_norm", "none")
    done = torchrun([*flags, "--nonfinite_loss", "skip"], script="test/nonfinite_inject.py", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    skips = [r for r in read_log(out) if r["kind"] == "skip"]
    assert [(r["step"], r["reason"]) for r in skips] == [(2, "loss")]
    assert all(torch.isfinite(t).all() for t in weights(out).values())
    assert all(math.isfinite(r["loss"]) for r in read_log(out) if r["kind"] == "train" and r["step"] != 2)
    assert "(1 skipped: non-finite loss)" in done.stdout

    # Stop mode: both processes stop at the same step (no rank left waiting in a collective), exit status 1.
    done = torchrun(tiny_args(dataset, tmp_path / "stop", *COMMON, "--batch_size", "4"),
                    script="test/nonfinite_inject.py", env=env)
    assert done.returncode != 0
    assert done.stderr.count("error: non-finite loss at step 2 (epoch 1, batch 2 of 3)") == 1
    assert not (tmp_path / "stop" / "checkpoints" / "last").exists()  # nothing good to keep yet
    assert json.loads((tmp_path / "stop" / "train_log.jsonl").read_text().splitlines()[-1])["step"] == 1
