"""Checkpoint directories that describe themselves, written atomically, and loading models from them.

    RUN/checkpoints/{last,best}/
        model.safetensors, config.json, generation_config.json    save_pretrained (safetensors); generation_config
                                                                   holds max_new_tokens and num_beams to caption with
        caption_prompt.json                                        the prompt it was trained after (caption_settings)
        preprocessor_config.json, tokenizer files                  processor.save_pretrained
        training_config.yaml                                       the full TrainingConfig (usable as --config)
        trainer_state.json                                         step, epoch, best CIDEr, log file, val metrics
        training_state/optimizer.pt, scheduler.pt, rng_state_R.pt  `last` only: what --resume needs

A checkpoint is written into a hidden staging directory next to its final name (`.last.tmp`), synced to disk and
renamed into place; the previous one is kept as `.last.old` until the new one is in place. A crash (kill -9, power
loss) at any point leaves either `last` or `.last.old` complete, and `find_checkpoint` picks that one; a staging
directory is never read, and the next checkpoint clears it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blip_caption_ros.backends.caption_settings import PROMPT_FILE

TRAINER_STATE = "trainer_state.json"
TRAINING_CONFIG = "training_config.yaml"
TRAINING_STATE_DIR = "training_state"


class CheckpointError(ValueError):
    """A checkpoint or model that cannot be loaded; the message names the path or id."""


@dataclass
class TrainerState:
    """Where a run stands; saved as trainer_state.json in every checkpoint."""

    global_step: int = 0  # optimizer steps taken
    epoch: int = 0  # epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch already consumed (per process)
    best_metric: float | None = None  # best validation CIDEr so far
    best_step: int | None = None
    evals_without_improvement: int = 0
    metric_name: str = "CIDEr"
    log_file: str | None = None
    samples_seen: int = 0
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss (--nonfinite_loss skip)
    consecutive_skips: int = 0
    val_metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        (directory / TRAINER_STATE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> TrainerState:
        path = Path(directory) / TRAINER_STATE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: not found; {directory} is not a blip-train checkpoint") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable trainer state: {exc}") from None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)



def write_prompt(directory: str | os.PathLike, prompt: str) -> Path:
    """Record the prompt a model was trained with beside its weights (caption_settings reads it on the vehicle)."""
    path = Path(directory) / PROMPT_FILE
    path.write_text(json.dumps({"prompt": prompt}) + "\n", encoding="utf-8")
    return path

def quiet_transformers() -> None:
    """Command-line runs show their own progress; transformers' per-save and per-load bars only add noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_blip(path_or_id: str, what: str = "--model", dtype=None):
    """(model, processor) from a save_pretrained directory or a hub id; CheckpointError when it cannot load.

    Safetensors only, and nothing fetched for a local directory: see blip_caption_ros.backends.model_loading. A
    workstation tool may fetch a hub id (HF_HUB_OFFLINE still says no). `dtype` None: as the checkpoint records.
    """
    from blip_caption_ros.backends.model_loading import ModelFilesError
    from blip_caption_ros.backends.model_loading import load_blip as load_safely

    try:
        return load_safely(path_or_id, dtype=dtype, what=what, allow_download=True)
    except ModelFilesError as exc:
        raise CheckpointError(str(exc)) from None


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state: tuple) -> list:
    name, keys, pos, has_gauss, cached = state
    return [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached]


def _numpy_state_from_plain(state: list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def staging_dir(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def discard_staging(checkpoints: Path) -> list[Path]:
    """Remove the staging directories a crash left in `checkpoints` (main process); returns them."""
    stale = sorted(p for p in checkpoints.glob(".*.tmp") if p.is_dir()) if checkpoints.is_dir() else []
    for path in stale:
        shutil.rmtree(path)
    return stale


def previous_dir(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def find_checkpoint(final: str | Path) -> Path | None:
    """`final` if it exists, else the previous checkpoint a crash in the middle of `commit_checkpoint` left behind."""
    final = Path(final)
    for candidate in (final, previous_dir(final)):
        if candidate.is_dir():
            return candidate
    return None


def begin_checkpoint(final: Path) -> Path:
    """A fresh staging directory for `final` (main process only)."""
    staging = staging_dir(final)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def write_checkpoint(staging: Path, model, processor, config, state: TrainerState, optimizer=None,
                     scheduler=None) -> None:
    """Weights, processor, config and state into `staging` (main process); optimizer state when given."""
    model.save_pretrained(staging, safe_serialization=True)
    processor.save_pretrained(staging)
    write_prompt(staging, config.generation.prompt)
    config.save(staging / TRAINING_CONFIG)
    state.save(staging)
    if optimizer is not None:
        directory = staging / TRAINING_STATE_DIR
        directory.mkdir(exist_ok=True)
        torch.save(optimizer.state_dict(), directory / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), directory / "scheduler.pt")


def write_rng_state(staging: Path, rank: int) -> None:
    """Every process saves its own RNG state, so a resumed DDP run draws the same dropout masks."""
    directory = staging / TRAINING_STATE_DIR
    directory.mkdir(exist_ok=True)
    torch.save(rng_state(), directory / f"rng_state_{rank}.pt")


def _fsync_tree(directory: Path) -> None:
    """Flush every file of `directory` and the directory entries, so a rename never publishes unwritten data."""
    for path in directory.rglob("*"):
        if path.is_dir():
            _fsync_dir(path)
        else:
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_checkpoint(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` with renames only (main process).

    Order matters: a complete checkpoint exists under `final` or `.final.old` at every instant, so a crash anywhere
    in here leaves something `find_checkpoint` resumes from.
    """
    _fsync_tree(staging)
    old = previous_dir(final)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)  # stale: `final` is complete
        final.rename(old)
    staging.rename(final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


def load_training_state(directory: Path, optimizer, scheduler, rank: int) -> None:
    """Optimizer, scheduler and this process's RNG state from a `last` checkpoint."""
    state_dir = Path(directory) / TRAINING_STATE_DIR
    optimizer_file = state_dir / "optimizer.pt"
    if not optimizer_file.is_file():
        raise CheckpointError(f"{directory}: has no {TRAINING_STATE_DIR}/optimizer.pt; only a checkpoints/last "
                              "directory can be resumed (best keeps the weights only)")
    try:
        optimizer.load_state_dict(torch.load(optimizer_file, map_location="cpu", weights_only=True))
        scheduler_file = state_dir / "scheduler.pt"
        if scheduler_file.is_file():
            scheduler.load_state_dict(torch.load(scheduler_file, weights_only=True))
        rng_file = state_dir / f"rng_state_{rank}.pt"
        if not rng_file.is_file():
            rng_file = state_dir / "rng_state_0.pt"
        if rng_file.is_file():
            set_rng_state(torch.load(rng_file, weights_only=True))
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{state_dir}: cannot restore the training state: {exc}") from None
