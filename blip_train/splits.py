"""The splits a `DataConfig` names: the training split (with its BDD-X sentences) and the BDD100K validation split.

Validation always uses the BDD100K split under `--data_root`, so runs on any training source are scored alike;
blip-train, blip-eval and blip-compare all load it with `load_val_split`.
"""

from __future__ import annotations

from pathlib import Path

from blip_train.attribute_filter import parse_only
from blip_train.bddx_mixing import add_bddx
from blip_train.config import DataConfig
from blip_train.data import CaptionSplit, load_caption_split


def load_splits(data: DataConfig, size: tuple[int, int], progress: bool = False
                ) -> tuple[CaptionSplit, CaptionSplit, list[str]]:
    """(training split, BDD100K validation split, warnings) as `data` describes them.

    `data.missing_inputs()` must be empty (blip-train checks it before anything is loaded).
    """
    val = load_val_split(data, size, data.max_val_frames, progress)
    only = parse_only(data.only)
    train_root = data.cityscapes_root if data.dataset == "cityscapes" else data.data_root
    train = load_caption_split(train_root, data.train_split, size, caption_seed=data.caption_seed,
                               max_frames=data.max_train_frames, cache_images=data.cache_images,
                               cache_dir=data.cache_dir, workers=data.num_workers,
                               max_bad_image_fraction=data.max_bad_image_fraction, progress=progress,
                               dataset=data.dataset, only=only)
    notes: list[str] = []
    if data.caption_source != "labels":
        # A video whose still is a validation frame must not be trained on, at any time in it.
        val_videos = {Path(frame.name).stem for frame in val.frames}
        train, notes = add_bddx(train, data, only, val_videos, size, progress)
    return train, val, notes


def load_val_split(data: DataConfig, size: tuple[int, int], max_frames: int | None = None,
                   progress: bool = False) -> CaptionSplit:
    """The BDD100K validation split `data` names, at `size`: what training, blip-eval and blip-compare score on."""
    return load_caption_split(data.data_root, data.val_split, size, caption_seed=data.caption_seed,
                              max_frames=max_frames, cache_images=data.cache_images, cache_dir=data.cache_dir,
                              workers=data.num_workers, max_bad_image_fraction=data.max_bad_image_fraction,
                              progress=progress)
