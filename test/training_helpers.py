"""Helpers for the training-side tests: the flags that make blip-train tiny and quiet, and its log.

The generated datasets these runs train on are conftest.py fixtures (`synthetic_bdd`, `dataset`, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

from blip_train.config import TrainingConfig
from blip_train.dataclass_args import parse_config


def tiny_training_flags(cache_dir: Path, *extra: str) -> list[str]:
    """blip-train (or blip-compare) flags for a tiny random BLIP on CPU, quiet; `extra` come last and win."""
    return ["--arch", "tiny", "--cache_dir", str(cache_dir), "--batch_size", "8", "--lr", "1e-3",
            "--num_workers", "0", "--max_new_tokens", "8", "--log_every", "1", "--no-progress", *extra]


def tiny_args(root: Path, out: Path, *extra: str) -> list[str]:
    """A whole tiny blip-train command line: data from `root`, run directory `out`, cache beside it."""
    return ["--data_root", str(root), "--out_dir", str(out), *tiny_training_flags(out.parent / "cache", *extra)]


def tiny_config(root: Path, out: Path, *extra: str) -> TrainingConfig:
    return parse_config(TrainingConfig, tiny_args(root, out, *extra), "test", "test")


def read_log(out: Path) -> list[dict]:
    from blip_train.train import LOG_FILE

    return [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
