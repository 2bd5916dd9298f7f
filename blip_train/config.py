"""The settings of blip-train and blip-eval: section dataclasses, each field with its help text and checks.

`TrainingConfig` (blip-train) and `EvalSettings` (blip-eval) are the whole commands' settings; their fields are the
sections (`DataConfig`, `OptimConfig`, `LoopConfig`, `ScoringConfig`, ...), which is how `training_config.yaml` in a
checkpoint is grouped, so any checkpoint's config is itself a recipe. Flags, recipes and the one collected
`ConfigError` come from `blip_train.dataclass_args`; flat flag names keep the seed's `--epochs` and `--batch_size`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blip_train.attribute_filter import parse_only
from blip_train.dataclass_args import Validated, check_positive, flag_help
from blip_train.modeling import BLIP_BASE, TINY, BlipArchitecture

#: Architectures a model can be built from scratch with (`--arch`); the vocabulary comes from the caption grammar.
ARCHITECTURES: dict[str, BlipArchitecture] = {
    "tiny": TINY,
    # The bundled demo's model: 64 px frames are enough to tell weather and time of day, small enough for 2 CPU cores.
    "demo": BlipArchitecture(
        image_size=64, patch_size=8, vision_hidden=128, vision_layers=2, vision_heads=4, vision_intermediate=256,
        text_hidden=128, text_layers=2, text_heads=4, text_intermediate=256, max_position_embeddings=128,
    ),
    "blip-base": BLIP_BASE,
}
PRECISIONS = ("no", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")
NONFINITE_ACTIONS = ("stop", "skip")
DATASETS = ("bdd100k", "cityscapes")
CAPTION_SOURCES = ("labels", "bddx", "both")


@dataclass
class DataConfig(Validated):
    """Where the frames come from and how they reach the model."""

    data_root: str | None = field(default=None, metadata=flag_help(
        "BDD100K root: images/100k/{split}/*.jpg and labels/det_20/det_{split}.json (or the 2018 label files)",
        metavar="DIR"))
    train_split: str = field(default="train", metadata=flag_help("split to train on"))
    val_split: str = field(default="val", metadata=flag_help("split to validate and evaluate on"))
    max_train_frames: int | None = field(default=None, metadata=flag_help(
        "use only the first N training frames (default: all)"))
    max_val_frames: int | None = field(default=500, metadata=flag_help(
        "frames of the validation split scored during training (generation is slow; default 500, none = all)"))
    caption_seed: int = field(default=0, metadata=flag_help("seed of the caption phrasing (blip_train.captions)"))
    image_size: int | None = field(default=None, metadata=flag_help(
        "input size in pixels; must match the model's vision config (default: the model's own)"))
    cache_images: bool = field(default=True, metadata=flag_help(
        "decode and resize every image once into a uint8 memmap under --cache_dir (else decode per step)"))
    cache_dir: str | None = field(default=None, metadata=flag_help(
        "where resized-image caches live (default: $XDG_CACHE_HOME/blip_train or ~/.cache/blip_train)", metavar="DIR"))
    num_workers: int = field(default=2, metadata=flag_help("data loader worker processes (and cache-building threads)"))
    references_per_frame: int = field(default=5, metadata=flag_help(
        "reference captions per frame for BLEU/METEOR/ROUGE-L/CIDEr: the grammar's phrasings under caption_seed, "
        "caption_seed+1, ... (every one states the same facts)"))
    max_text_length: int = field(default=128, metadata=flag_help("tokens per training caption, prompt included"))
    max_bad_image_fraction: float = field(default=0.0, metadata=flag_help(
        "share of missing/unreadable images to skip (counted and reported) before failing; 0 fails on the first"))
    # Where the training captions come from (blip_train.bddx_mixing). Validation always uses --data_root's BDD100K
    # labels.
    dataset: str = field(default="bdd100k", metadata=flag_help(
        "training images and labels: bdd100k (--data_root) or cityscapes (--cityscapes_root: leftImg8bit/ and "
        "gtFine/ polygons, no weather or time of day); validation stays on --data_root's BDD100K split",
        choices=DATASETS))
    cityscapes_root: str | None = field(default=None, metadata=flag_help(
        "Cityscapes root for --dataset cityscapes: leftImg8bit/{split}/{city}/*_leftImg8bit.png and "
        "gtFine/{split}/{city}/*_gtFine_polygons.json", metavar="DIR"))
    caption_source: str = field(default="labels", metadata=flag_help(
        "training captions: labels (the grammar's sentence from the BDD100K labels), bddx (BDD-X action and "
        "justification sentences of the same stills, needs --bddx_csv) or both (mixed by --bddx_ratio)",
        choices=CAPTION_SOURCES))
    bddx_csv: str | None = field(default=None, metadata=flag_help(
        "BDD-X-Annotations_v1.csv for --caption_source bddx/both", metavar="FILE"))
    bddx_ratio: float = field(default=0.5, metadata=flag_help(
        "with --caption_source both: share of training draws that are BDD-X sentences (the rest: label captions)"))
    bddx_videos: str | None = field(default=None, metadata=flag_help(
        "folder of BDD videos (VIDEO.mov/.mp4): also train on the frame at each BDD-X segment's midpoint, decoded "
        "once into --cache_dir (videos whose still is in the validation split are left out)", metavar="DIR"))
    only: str | None = field(default=None, metadata=flag_help(
        "train only on frames with these attribute values, e.g. weather=snowy,foggy; repeat the flag or separate "
        "attributes with ';' (values of one attribute: any of them; several attributes: all of them)",
        metavar="ATTR=V1,V2", repeatable=True))
    balance_attributes: bool = field(default=False, metadata=flag_help(
        "draw training frames with weight inverse to the frequency of their weather/time-of-day/scene combination "
        "(capped by --balance_cap), so rare conditions (snowy night, foggy highway) are seen more often"))
    balance_cap: float = field(default=10.0, metadata=flag_help(
        "with --balance_attributes: the largest weight of a rare combination relative to the most common one"))

    def problems(self) -> list[str]:
        out = check_positive(self, ("max_train_frames", "max_val_frames", "image_size"), allow_none=True)
        out += check_positive(self, ("max_text_length", "references_per_frame"))
        if self.num_workers < 0:
            out.append(f"--num_workers must be >= 0, got {self.num_workers}")
        if not 0.0 <= self.max_bad_image_fraction < 1.0:
            out.append(f"--max_bad_image_fraction must be in [0, 1), got {self.max_bad_image_fraction}")
        if self.dataset not in DATASETS:
            out.append(f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.caption_source not in CAPTION_SOURCES:
            out.append(f"--caption_source must be one of {', '.join(CAPTION_SOURCES)}, got {self.caption_source!r}")
        elif self.caption_source != "labels" and self.dataset == "cityscapes":
            out.append(f"--caption_source {self.caption_source} pairs BDD-X sentences with BDD100K stills; "
                       "use --dataset bdd100k (Cityscapes has labels only)")
        if not 0.0 < self.bddx_ratio < 1.0:
            out.append(f"--bddx_ratio must be in (0, 1), got {self.bddx_ratio} (for all or none of BDD-X use "
                       "--caption_source bddx or labels)")
        if self.balance_cap < 1.0:
            out.append(f"--balance_cap must be >= 1, got {self.balance_cap}")
        if self.only is not None:
            try:
                parse_only(self.only)
            except ValueError as exc:
                out.append(str(exc))
        return out

    def missing_inputs(self) -> list[str]:
        """Required paths that are unset: checked when training starts, so a recipe need not name them."""
        out = []
        if not self.data_root:
            out.append("--data_root is required: a BDD100K root with images/100k/ and labels/ (its validation split "
                       "scores every run)")
        if self.dataset == "cityscapes" and not self.cityscapes_root:
            out.append("--cityscapes_root is required with --dataset cityscapes")
        if self.caption_source != "labels" and not self.bddx_csv:
            out.append(f"--bddx_csv is required with --caption_source {self.caption_source}")
        return out


@dataclass
class ModelConfig(Validated):
    """Which BLIP to start from."""

    model: str = field(default="Salesforce/blip-image-captioning-base", metadata=flag_help(
        "BlipForConditionalGeneration to fine-tune: a local directory or a hub id (loaded with from_pretrained)",
        metavar="PATH_OR_ID"))
    arch: str | None = field(default=None, metadata=flag_help(
        f"build a randomly initialised BLIP of this size instead of loading --model ({', '.join(ARCHITECTURES)}); "
        "its tokenizer holds the caption grammar's words", metavar="{tiny,demo,blip-base}"))

    def problems(self) -> list[str]:
        if self.arch is not None and self.arch not in ARCHITECTURES:
            return [f"--arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}"]
        return []


@dataclass
class OptimConfig(Validated):
    """AdamW, learning-rate schedule, precision."""

    lr: float = field(default=1e-5, metadata=flag_help("peak learning rate (AdamW)"))
    weight_decay: float = field(default=0.05, metadata=flag_help(
        "AdamW weight decay (not applied to biases and norms)"))
    schedule: str = field(default="cosine", metadata=flag_help(
        f"learning-rate decay after warm-up: {', '.join(SCHEDULES)}", choices=SCHEDULES))
    warmup_steps: int = field(default=0, metadata=flag_help("linear warm-up length in optimizer steps"))
    warmup_ratio: float = field(default=0.0, metadata=flag_help(
        "warm-up as a share of all optimizer steps (used when --warmup_steps is 0)"))
    min_lr_ratio: float = field(default=0.0, metadata=flag_help("final learning rate as a share of --lr"))
    grad_accum: int = field(default=1, metadata=flag_help("batches accumulated per optimizer step"))
    max_grad_norm: float | None = field(default=1.0, metadata=flag_help(
        "clip gradients to this L2 norm (none: no clip)"))
    label_smoothing: float | None = field(default=None, metadata=flag_help(
        "caption loss label smoothing (BLIP/LAVIS use 0.1; default: the model config's value)"))
    precision: str = field(default="no", metadata=flag_help(
        "autocast: no (fp32), bf16, or fp16 (CUDA only)", choices=PRECISIONS))
    nonfinite_loss: str = field(default="stop", metadata=flag_help(
        "on a NaN/inf loss or gradient norm: stop (error naming the step; checkpoints/last stays the last good one) "
        "or skip (no update for that step, counted and logged as 'skip' records)", choices=NONFINITE_ACTIONS))
    max_nonfinite_skips: int = field(default=10, metadata=flag_help(
        "with --nonfinite_loss skip: the most consecutive steps that may be skipped; one more stops the run"))

    def problems(self) -> list[str]:
        out = check_positive(self, ("lr", "grad_accum", "max_nonfinite_skips"))
        out += check_positive(self, ("max_grad_norm",), allow_none=True)
        if self.weight_decay < 0:
            out.append(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            out.append(f"--warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            out.append(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            out.append(f"--min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            out.append(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.schedule not in SCHEDULES:
            out.append(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            out.append(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.nonfinite_loss not in NONFINITE_ACTIONS:
            out.append(f"--nonfinite_loss must be one of {', '.join(NONFINITE_ACTIONS)}, got {self.nonfinite_loss!r}")
        return out


@dataclass
class GenerationSettings(Validated):
    """How captions are generated for validation and evaluation."""

    prompt: str = field(default="a picture of ", metadata=flag_help(
        "text the decoder starts from; not scored in the loss and stripped from generated captions (LAVIS)"))
    max_new_tokens: int = field(default=96, metadata=flag_help("longest generated caption, in tokens"))
    num_beams: int = field(default=1, metadata=flag_help("beam width (1 = greedy)"))
    eval_batch_size: int = field(default=64, metadata=flag_help("images per generation batch"))

    def problems(self) -> list[str]:
        return check_positive(self, ("max_new_tokens", "num_beams", "eval_batch_size"))


@dataclass
class LoopConfig(Validated):
    """Loop length, checkpoints, logging."""

    out_dir: str = field(default="runs/blip", metadata=flag_help(
        "run directory: train_log.jsonl, checkpoints/last and checkpoints/best", metavar="DIR"))
    epochs: int = field(default=5, metadata=flag_help("passes over the training split"))
    batch_size: int = field(default=32, metadata=flag_help(
        "images per batch and process (global = x processes x accum)"))
    max_steps: int | None = field(default=None, metadata=flag_help("stop after this many optimizer steps in total"))
    seed: int = field(default=42, metadata=flag_help("seed of initialisation, data order and dropout"))
    eval_every: int | None = field(default=None, metadata=flag_help(
        "validate (and checkpoint) every N optimizer steps (default: at the end of every epoch)"))
    early_stopping_patience: int | None = field(default=None, metadata=flag_help(
        "stop after N validations without a better CIDEr (default: never)"))
    log_every: int = field(default=10, metadata=flag_help("write a train_log.jsonl record every N optimizer steps"))
    resume: str | None = field(default=None, metadata=flag_help(
        "continue from a checkpoint directory, or 'auto' for OUT_DIR/checkpoints/last when it exists",
        metavar="DIR|auto"))
    progress: bool = field(default=True, metadata=flag_help("show progress bars"))

    def problems(self) -> list[str]:
        out = check_positive(self, ("epochs", "batch_size", "log_every"))
        out += check_positive(self, ("max_steps", "eval_every", "early_stopping_patience"), allow_none=True)
        return out


@dataclass
class ScoringConfig(Validated):
    """What blip-eval scores and where it writes."""

    checkpoint: str | None = field(default=None, metadata=flag_help(
        "model to evaluate: a checkpoint directory (or any save_pretrained BLIP directory / hub id)", metavar="DIR"))
    baseline: str | None = field(default=None, metadata=flag_help(
        "also caption with this model (e.g. the base model before fine-tuning) and write the before/after report",
        metavar="PATH_OR_ID"))
    baseline_prompt: str | None = field(default=None, metadata=flag_help("prompt of the baseline (default: --prompt)"))
    out: str | None = field(default=None, metadata=flag_help(
        "directory for metrics.json, captions and the report (default: the checkpoint directory)", metavar="DIR"))
    max_frames: int | None = field(default=None, metadata=flag_help("score only the first N frames of the split"))
    train_log: str | None = field(default=None, metadata=flag_help(
        "train_log.jsonl for the report's loss curves (default: the one the checkpoint names)", metavar="FILE"))
    report_samples: int = field(default=12, metadata=flag_help("frames shown in the report"))

    def problems(self) -> list[str]:
        out = check_positive(self, ("max_frames",), allow_none=True)
        out += check_positive(self, ("report_samples",))
        if not self.checkpoint:
            out.append("--checkpoint is required")
        return out


@dataclass
class TrainingConfig:
    """Everything blip-train needs; the sections are what training_config.yaml is grouped by."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    train: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


@dataclass
class EvalSettings:
    """Everything blip-eval needs."""

    #: DataConfig fields that only training reads: no flag for them in blip-eval.
    HIDDEN_FLAGS: typing.ClassVar[tuple[str, ...]] = (
        "train_split", "max_train_frames", "max_val_frames", "max_text_length", "image_size", "dataset",
        "cityscapes_root", "caption_source", "bddx_csv", "bddx_ratio", "bddx_videos", "only", "balance_attributes",
        "balance_cap")

    eval: ScoringConfig = field(default_factory=ScoringConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
