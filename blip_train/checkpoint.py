"""Checkpoint directories that describe themselves, written atomically, and loading models from them.

    RUN/checkpoints/{last,best}/
        model.safetensors, config.json, generation_config.json    save_pretrained (safetensors)
        preprocessor_config.json, tokenizer files                  processor.save_pretrained
        training_config.yaml                                       the full TrainingConfig (usable as --config)
        trainer_state.json                                         step, epoch, best CIDEr, log file, val metrics
        training_state/optimizer.pt, scheduler.pt, rng_state_R.pt  `last` only: what --resume needs

A checkpoint is written into a hidden temporary directory next to its final name and renamed into place, so a
crash never leaves a half-written `last` behind.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def quiet_transformers() -> None:
    """Command-line runs show their own progress; transformers' per-save and per-load bars only add noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_blip(path_or_id: str, what: str = "--model"):
    """(model, processor) from a save_pretrained directory or a hub id; CheckpointError when it cannot load."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        processor = BlipProcessor.from_pretrained(path_or_id)
        model = BlipForConditionalGeneration.from_pretrained(path_or_id)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        local = Path(path_or_id)
        hint = "" if local.exists() else " (not a local directory; hub ids need network access or the HF cache)"
        raise CheckpointError(f"{what} {path_or_id}: cannot load a BLIP captioning model{hint}: {first_line}") from None
    return model, processor


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


def commit_checkpoint(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` with renames only (main process)."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staging.rename(final)
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
