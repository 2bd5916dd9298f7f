"""Training and evaluation settings: grouped dataclasses, one command-line parser, YAML recipes.

Every field carries its help text; the parser builds one flag per field (flat names, so the seed's `--epochs` and
`--batch_size` keep their spelling) and also reads `--config recipe.yaml`. Precedence: field default < recipe < flag.
A recipe is either flat (`lr: 1e-5`) or grouped by section (`optim: {lr: 1e-5}`), as `training_config.yaml` in a
checkpoint is written, so any checkpoint's config is itself a recipe. All problems found in the arguments are
collected and raised once, as a `ConfigError` whose lines name the flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


class ConfigError(ValueError):
    """Invalid settings. One line per problem, each naming the flag (or recipe key) concerned."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def _help(text: str, **extra: Any) -> dict:
    return {"help": text, **extra}


class _Validated:
    """Mixin: `__post_init__` raises one ConfigError listing everything `problems()` found."""

    def problems(self) -> list[str]:
        return []

    def __post_init__(self):
        found = self.problems()
        if found:
            raise ConfigError(found)


def _check_positive(obj: Any, names: Sequence[str], allow_none: bool = False) -> list[str]:
    out = []
    for name in names:
        value = getattr(obj, name)
        if value is None and allow_none:
            continue
        if value is None or value <= 0:
            out.append(f"--{name} must be a positive number, got {value}")
    return out


@dataclass
class DataConfig(_Validated):
    """Where the frames come from and how they reach the model."""

    data_root: str | None = field(default=None, metadata=_help(
        "BDD100K root: images/100k/{split}/*.jpg and labels/det_20/det_{split}.json (or the 2018 label files)",
        metavar="DIR"))
    train_split: str = field(default="train", metadata=_help("split to train on"))
    val_split: str = field(default="val", metadata=_help("split to validate and evaluate on"))
    max_train_frames: int | None = field(default=None, metadata=_help(
        "use only the first N training frames (default: all)"))
    max_val_frames: int | None = field(default=500, metadata=_help(
        "frames of the validation split scored during training (generation is slow; default 500, none = all)"))
    caption_seed: int = field(default=0, metadata=_help("seed of the caption phrasing (blip_train.captions)"))
    image_size: int | None = field(default=None, metadata=_help(
        "input size in pixels; must match the model's vision config (default: the model's own)"))
    cache_images: bool = field(default=True, metadata=_help(
        "decode and resize every image once into a uint8 memmap under --cache_dir (else decode per step)"))
    cache_dir: str | None = field(default=None, metadata=_help(
        "where resized-image caches live (default: $XDG_CACHE_HOME/blip_train or ~/.cache/blip_train)", metavar="DIR"))
    num_workers: int = field(default=2, metadata=_help("data loader worker processes (and cache-building threads)"))
    references_per_frame: int = field(default=5, metadata=_help(
        "reference captions per frame for BLEU/METEOR/ROUGE-L/CIDEr: the grammar's phrasings under caption_seed, "
        "caption_seed+1, ... (every one states the same facts)"))
    max_text_length: int = field(default=128, metadata=_help("tokens per training caption, prompt included"))
    max_bad_image_fraction: float = field(default=0.0, metadata=_help(
        "share of missing/unreadable images to skip (counted and reported) before failing; 0 fails on the first"))
    # Where the training captions come from (blip_train.mixing). Validation always uses --data_root's BDD100K labels.
    dataset: str = field(default="bdd100k", metadata=_help(
        "training images and labels: bdd100k (--data_root) or cityscapes (--cityscapes_root: leftImg8bit/ and "
        "gtFine/ polygons, no weather or time of day); validation stays on --data_root's BDD100K split",
        choices=DATASETS))
    cityscapes_root: str | None = field(default=None, metadata=_help(
        "Cityscapes root for --dataset cityscapes: leftImg8bit/{split}/{city}/*_leftImg8bit.png and "
        "gtFine/{split}/{city}/*_gtFine_polygons.json", metavar="DIR"))
    caption_source: str = field(default="labels", metadata=_help(
        "training captions: labels (the grammar's sentence from the BDD100K labels), bddx (BDD-X action and "
        "justification sentences of the same stills, needs --bddx_csv) or both (mixed by --bddx_ratio)",
        choices=CAPTION_SOURCES))
    bddx_csv: str | None = field(default=None, metadata=_help(
        "BDD-X-Annotations_v1.csv for --caption_source bddx/both", metavar="FILE"))
    bddx_ratio: float = field(default=0.5, metadata=_help(
        "with --caption_source both: share of training draws that are BDD-X sentences (the rest: label captions)"))
    bddx_videos: str | None = field(default=None, metadata=_help(
        "folder of BDD videos (VIDEO.mov/.mp4): also train on the frame at each BDD-X segment's midpoint, decoded "
        "once into --cache_dir (videos whose still is in the validation split are left out)", metavar="DIR"))
    only: str | None = field(default=None, metadata=_help(
        "train only on frames with these attribute values, e.g. weather=snowy,foggy; repeat the flag or separate "
        "attributes with ';' (values of one attribute: any of them; several attributes: all of them)",
        metavar="ATTR=V1,V2", repeatable=True))
    balance_attributes: bool = field(default=False, metadata=_help(
        "draw training frames with weight inverse to the frequency of their weather/time-of-day/scene combination "
        "(capped by --balance_cap), so rare conditions (snowy night, foggy highway) are seen more often"))
    balance_cap: float = field(default=10.0, metadata=_help(
        "with --balance_attributes: the largest weight of a rare combination relative to the most common one"))

    def problems(self) -> list[str]:
        out = _check_positive(self, ("max_train_frames", "max_val_frames", "image_size"), allow_none=True)
        out += _check_positive(self, ("max_text_length", "references_per_frame"))
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
            from blip_train.mixing import parse_only

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
class ModelConfig(_Validated):
    """Which BLIP to start from."""

    model: str = field(default="Salesforce/blip-image-captioning-base", metadata=_help(
        "BlipForConditionalGeneration to fine-tune: a local directory or a hub id (loaded with from_pretrained)",
        metavar="PATH_OR_ID"))
    arch: str | None = field(default=None, metadata=_help(
        f"build a randomly initialised BLIP of this size instead of loading --model ({', '.join(ARCHITECTURES)}); "
        "its tokenizer holds the caption grammar's words", metavar="{tiny,demo,blip-base}"))

    def problems(self) -> list[str]:
        if self.arch is not None and self.arch not in ARCHITECTURES:
            return [f"--arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}"]
        return []


@dataclass
class OptimConfig(_Validated):
    """AdamW, learning-rate schedule, precision."""

    lr: float = field(default=1e-5, metadata=_help("peak learning rate (AdamW)"))
    weight_decay: float = field(default=0.05, metadata=_help("AdamW weight decay (not applied to biases and norms)"))
    schedule: str = field(default="cosine", metadata=_help(
        f"learning-rate decay after warm-up: {', '.join(SCHEDULES)}", choices=SCHEDULES))
    warmup_steps: int = field(default=0, metadata=_help("linear warm-up length in optimizer steps"))
    warmup_ratio: float = field(default=0.0, metadata=_help(
        "warm-up as a share of all optimizer steps (used when --warmup_steps is 0)"))
    min_lr_ratio: float = field(default=0.0, metadata=_help("final learning rate as a share of --lr"))
    grad_accum: int = field(default=1, metadata=_help("batches accumulated per optimizer step"))
    max_grad_norm: float | None = field(default=1.0, metadata=_help("clip gradients to this L2 norm (none: no clip)"))
    label_smoothing: float | None = field(default=None, metadata=_help(
        "caption loss label smoothing (BLIP/LAVIS use 0.1; default: the model config's value)"))
    precision: str = field(default="no", metadata=_help(
        "autocast: no (fp32), bf16, or fp16 (CUDA only)", choices=PRECISIONS))
    nonfinite_loss: str = field(default="stop", metadata=_help(
        "on a NaN/inf loss or gradient norm: stop (error naming the step; checkpoints/last stays the last good one) "
        "or skip (no update for that step, counted and logged as 'skip' records)", choices=NONFINITE_ACTIONS))
    max_nonfinite_skips: int = field(default=10, metadata=_help(
        "with --nonfinite_loss skip: the most consecutive steps that may be skipped; one more stops the run"))

    def problems(self) -> list[str]:
        out = _check_positive(self, ("lr", "grad_accum", "max_nonfinite_skips"))
        out += _check_positive(self, ("max_grad_norm",), allow_none=True)
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
class GenerationSettings(_Validated):
    """How captions are generated for validation and evaluation."""

    prompt: str = field(default="a picture of ", metadata=_help(
        "text the decoder starts from; not scored in the loss and stripped from generated captions (LAVIS)"))
    max_new_tokens: int = field(default=96, metadata=_help("longest generated caption, in tokens"))
    num_beams: int = field(default=1, metadata=_help("beam width (1 = greedy)"))
    eval_batch_size: int = field(default=64, metadata=_help("images per generation batch"))

    def problems(self) -> list[str]:
        return _check_positive(self, ("max_new_tokens", "num_beams", "eval_batch_size"))


@dataclass
class TrainConfig(_Validated):
    """Loop length, checkpoints, logging."""

    out_dir: str = field(default="runs/blip", metadata=_help(
        "run directory: train_log.jsonl, checkpoints/last and checkpoints/best", metavar="DIR"))
    epochs: int = field(default=5, metadata=_help("passes over the training split"))
    batch_size: int = field(default=32, metadata=_help("images per batch and process (global = x processes x accum)"))
    max_steps: int | None = field(default=None, metadata=_help("stop after this many optimizer steps in total"))
    seed: int = field(default=42, metadata=_help("seed of initialisation, data order and dropout"))
    eval_every: int | None = field(default=None, metadata=_help(
        "validate (and checkpoint) every N optimizer steps (default: at the end of every epoch)"))
    early_stopping_patience: int | None = field(default=None, metadata=_help(
        "stop after N validations without a better CIDEr (default: never)"))
    log_every: int = field(default=10, metadata=_help("write a train_log.jsonl record every N optimizer steps"))
    resume: str | None = field(default=None, metadata=_help(
        "continue from a checkpoint directory, or 'auto' for OUT_DIR/checkpoints/last when it exists",
        metavar="DIR|auto"))
    progress: bool = field(default=True, metadata=_help("show progress bars"))

    def problems(self) -> list[str]:
        out = _check_positive(self, ("epochs", "batch_size", "log_every"))
        out += _check_positive(self, ("max_steps", "eval_every", "early_stopping_patience"), allow_none=True)
        return out


@dataclass
class EvalConfig(_Validated):
    """What blip-eval scores and where it writes."""

    checkpoint: str | None = field(default=None, metadata=_help(
        "model to evaluate: a checkpoint directory (or any save_pretrained BLIP directory / hub id)", metavar="DIR"))
    baseline: str | None = field(default=None, metadata=_help(
        "also caption with this model (e.g. the base model before fine-tuning) and write the before/after report",
        metavar="PATH_OR_ID"))
    baseline_prompt: str | None = field(default=None, metadata=_help("prompt of the baseline (default: --prompt)"))
    out: str | None = field(default=None, metadata=_help(
        "directory for metrics.json, captions and the report (default: the checkpoint directory)", metavar="DIR"))
    max_frames: int | None = field(default=None, metadata=_help("score only the first N frames of the split"))
    train_log: str | None = field(default=None, metadata=_help(
        "train_log.jsonl for the report's loss curves (default: the one the checkpoint names)", metavar="FILE"))
    report_samples: int = field(default=12, metadata=_help("frames shown in the report"))

    def problems(self) -> list[str]:
        out = _check_positive(self, ("max_frames",), allow_none=True)
        out += _check_positive(self, ("report_samples",))
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
    train: TrainConfig = field(default_factory=TrainConfig)

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

    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationSettings = field(default_factory=GenerationSettings)


# --- the parser -----------------------------------------------------------------------------------------------------

_NONE_WORDS = {"none", "null", ""}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, optional) of `int | None`-style annotations."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _convert(value: Any, hint: Any, where: str) -> Any:
    """A YAML or command-line value as the field's type; ValueError naming `where` otherwise."""
    base, optional = _base_type(hint)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if optional:
            return None
        raise ValueError(f"{where} may not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where} expects true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where} expects an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} expects an integer, got {value!r}") from None
    if base is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} expects a number, got {value!r}") from None
    if isinstance(value, (dict, list)):
        raise ValueError(f"{where} expects a single value, got {value!r}")
    return str(value)


def _sections(cls: type) -> dict[str, type]:
    """Section name -> group dataclass of a top-level config class."""
    hints = _field_types(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """One flag per field of every section of `cls`, grouped under the section's docstring, plus `--config`."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, allow_abbrev=False,
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="YAML", help="recipe file (flat or sectioned keys); flags override it")
    for section, group_cls in _sections(cls).items():
        group = parser.add_argument_group(section, (group_cls.__doc__ or "").strip())
        hints = _field_types(group_cls)
        for f in dataclasses.fields(group_cls):
            if f.name in getattr(cls, "HIDDEN_FLAGS", ()):
                continue
            base, optional = _base_type(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else None
            text = f.metadata.get("help", "")
            if "default" not in text:
                text += f" (default: {default!r})"
            kwargs: dict[str, Any] = {"help": text.replace("%", "%%")}
            if f.metadata.get("repeatable"):  # joined with "; " into one value by build_config
                kwargs["action"] = "append"
            if base is bool:
                group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kwargs)
            else:
                # Choices are checked with every other problem in __post_init__, not by argparse one at a time.
                metavar = "{" + ",".join(f.metadata["choices"]) + "}" if "choices" in f.metadata else None
                metavar = f.metadata.get("metavar", metavar)
                kwargs["metavar"] = metavar or {int: "N", float: "X"}.get(base, "TEXT") + ("|none" if optional else "")
                group.add_argument(f"--{f.name}", **kwargs)
    return parser


def _flatten_recipe(recipe: Mapping[str, Any], cls: type, source: str) -> tuple[dict[str, Any], list[str]]:
    """{field: value} from a flat or sectioned recipe, and the unknown keys (as problems)."""
    sections = _sections(cls)
    known = {f.name for group_cls in sections.values() for f in dataclasses.fields(group_cls)}
    flat: dict[str, Any] = {}
    problems = []
    for key, value in recipe.items():
        if key in sections and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                if sub_key in {f.name for f in dataclasses.fields(sections[key])}:
                    flat[sub_key] = sub_value
                else:
                    problems.append(f"{source}: unknown setting {key}.{sub_key}")
        elif key in known:
            flat[key] = value
        elif key in sections and value is None:
            continue
        else:
            problems.append(f"{source}: unknown setting {key!r}")
    return flat, problems


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) recipe as a mapping; ConfigError naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: recipe file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def build_config(cls: type, values: Mapping[str, Any], source: str = "settings") -> Any:
    """An instance of a top-level config class from flat {field: value}; every problem is collected first."""
    problems: list[str] = []
    groups = {}
    for section, group_cls in _sections(cls).items():
        hints = _field_types(group_cls)
        kwargs = {}
        for f in dataclasses.fields(group_cls):
            if f.name in values:
                value = values[f.name]
                if f.metadata.get("repeatable") and isinstance(value, (list, tuple)):
                    value = "; ".join(str(item) for item in value)
                try:
                    kwargs[f.name] = _convert(value, hints[f.name], f"--{f.name}")
                except ValueError as exc:
                    problems.append(str(exc))
        try:
            groups[section] = group_cls(**kwargs)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return cls(**groups)


def parse_config(cls: type, argv: Sequence[str] | None, prog: str, description: str,
                 epilog: str | None = None) -> Any:
    """Parse flags (and `--config` recipe) into `cls`. argparse itself exits 2 on unknown flags."""
    return parse_config_explicit(cls, argv, prog, description, epilog)[0]


def parse_config_explicit(cls: type, argv: Sequence[str] | None, prog: str, description: str,
                          epilog: str | None = None) -> tuple[Any, set[str]]:
    """As parse_config, plus the names of the fields the flags or the recipe set (the rest are defaults)."""
    parser = build_parser(cls, prog, description, epilog)
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    problems: list[str] = []
    recipe_path = args.pop("config", None)
    if recipe_path:
        flat, problems = _flatten_recipe(load_recipe(recipe_path), cls, str(recipe_path))
        values.update(flat)
    values.update(args)
    try:
        config = build_config(cls, values)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config, set(values)


def config_from_dict(cls: type, recipe: Mapping[str, Any], source: str = "config") -> Any:
    """A config from a (sectioned or flat) mapping, e.g. a checkpoint's training_config.yaml."""
    flat, problems = _flatten_recipe(recipe, cls, source)
    if problems:
        raise ConfigError(problems)
    return build_config(cls, flat, source)

