"""Same model, same recipe, two training sets: `blip-compare --data_root BDD100K --cityscapes_root CITYSCAPES`.

Trains with config/train/bdd100k_compare.yaml on BDD100K and with cityscapes_compare.yaml on Cityscapes (the two
recipes may differ in their training data only; this is checked), scores both models on the BDD100K validation
split, and writes to --out:

    bdd100k/, cityscapes/   each run: train_log.jsonl, checkpoints/, eval/metrics.json, eval/captions.jsonl
    comparison.md           the side-by-side table (losses, CIDEr, BLEU-4, attribute accuracy, edge-case values)
    comparison.json         the same figures
    loss.png                training and validation loss of both runs

Cityscapes labels no weather and no time of day, so its model never read them in a caption; those rows say so.
Every other flag is a blip-train flag applied to both runs (--epochs, --batch_size, --max_steps, --arch tiny ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from blip_train.attributes import ATTRIBUTE_KEYS
from blip_train.checkpoint import CheckpointError, load_blip, quiet_transformers
from blip_train.config import TrainingConfig
from blip_train.data import CaptionSplit, DataError
from blip_train.dataclass_args import ConfigError, parse_config
from blip_train.datasets.records import UNDEFINED
from blip_train.eval import EDGE_VALUES, evaluate_model, model_image_spec, write_scores
from blip_train.report import read_log
from blip_train.splits import load_val_split
from blip_train.train import NonFiniteLossError, fit, setup

#: (run name, table heading, default recipe file).
RUNS = (("bdd100k", "BDD100K", "bdd100k_compare.yaml"), ("cityscapes", "Cityscapes", "cityscapes_compare.yaml"))
#: blip-train flags blip-compare sets per run.
PER_RUN_FLAGS = ("--config", "--out_dir", "--data_root", "--dataset", "--cityscapes_root", "--resume")
#: Settings the two recipes may differ in: where the training data comes from, and where the run is written.
MAY_DIFFER = {("data", "dataset"), ("data", "cityscapes_root"), ("train", "out_dir")}
ATTRIBUTE_NAMES = {"timeofday": "time of day", "weather": "weather", "scene": "scene"}
NOT_TRAINED = "not in training captions"
REPO = Path(__file__).resolve().parents[1]


def default_recipe(name: str) -> Path:
    """A committed recipe: from the source tree, or from the installed share/blip_caption_ros/config/train."""
    for folder in (REPO / "config" / "train", Path(sys.prefix) / "share" / "blip_caption_ros" / "config" / "train"):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"recipe {name} not found in config/train/; pass it with --{name.split('_')[0]}_recipe FILE")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blip-compare", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Every other flag is passed to blip-train for both runs, e.g. --epochs 2 --batch_size 16 --max_steps "
               "100 --arch tiny (see blip-train --help).")
    parser.add_argument("--data_root", required=True, metavar="DIR",
                        help="BDD100K root: training data of the first run, validation and evaluation of both")
    parser.add_argument("--cityscapes_root", required=True, metavar="DIR",
                        help="Cityscapes root (leftImg8bit/ and gtFine/): training data of the second run")
    parser.add_argument("--out", default="runs/compare", metavar="DIR",
                        help="where both runs, the table and the plot go (default: runs/compare)")
    for name, label, recipe in RUNS:
        parser.add_argument(f"--{name}_recipe", metavar="YAML",
                            help=f"recipe of the {label} run (default: config/train/{recipe})")
    parser.add_argument("--max_eval_frames", type=int, metavar="N",
                        help="score only the first N frames of the BDD100K validation split (default: all)")
    return parser


def run_configs(args: argparse.Namespace, overrides: Sequence[str]) -> dict[str, TrainingConfig]:
    """The training config of each run; ConfigError when they differ in more than their training data."""
    problems = [f"{flag}: blip-compare sets it for each run" for flag in overrides
                if flag.split("=", 1)[0] in PER_RUN_FLAGS]
    if args.max_eval_frames is not None and args.max_eval_frames <= 0:
        problems.append(f"--max_eval_frames must be a positive number, got {args.max_eval_frames}")
    if problems:
        raise ConfigError(problems)
    configs, recipes = {}, {}
    for name, _, default in RUNS:
        recipes[name] = Path(getattr(args, f"{name}_recipe") or default_recipe(default))
        argv = ["--config", str(recipes[name]), "--data_root", args.data_root, "--out_dir", str(Path(args.out) / name),
                *overrides]
        if name == "cityscapes":
            argv += ["--cityscapes_root", args.cityscapes_root]
        configs[name] = parse_config(TrainingConfig, argv, prog=f"blip-compare ({name} run)", description="")
    for name, _, _ in RUNS:
        if configs[name].data.dataset != name:
            problems.append(f"{recipes[name]}: the {name} run needs dataset: {name}, "
                            f"the recipe says {configs[name].data.dataset!r}")
    first, second = (configs[name].to_dict() for name, _, _ in RUNS)
    for section, values in first.items():
        for key, value in values.items():
            if (section, key) not in MAY_DIFFER and second[section][key] != value:
                problems.append(f"the recipes differ in {section}.{key}: {value!r} ({recipes['bdd100k']}) vs "
                                f"{second[section][key]!r} ({recipes['cityscapes']}); a comparison needs the same "
                                "model, captions and optimisation")
    if problems:
        raise ConfigError(problems)
    return configs


def _last(records: Sequence[dict], kind: str) -> float | None:
    values = [r["loss"] for r in records if r.get("kind") == kind and isinstance(r.get("loss"), (int, float))]
    return values[-1] if values else None


def evaluate_run(checkpoint: Path, config: TrainingConfig, out_dir: Path, max_frames: int | None,
                 splits: dict[tuple[int, int], CaptionSplit], progress: bool) -> dict:
    """Caption the BDD100K validation split with `checkpoint`; write eval/metrics.json and captions.jsonl."""
    data = config.data
    model, processor = load_blip(str(checkpoint), "checkpoint")
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    size = model_image_spec(model, processor).size
    if size not in splits:
        splits[size] = load_val_split(data, size, max_frames, progress)
    split = splits[size]
    metrics, captions = evaluate_model(model, processor, split, config.generation, data.caption_seed,
                                       str(checkpoint), data.references_per_frame, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_scores(out_dir, metrics, captions, split)
    return metrics


def plot_losses(logs: dict[str, list[dict]], labels: dict[str, str], out_file: Path) -> Path | None:
    """Training (line) and validation (dots) loss of every run on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(r.get("kind") in ("train", "val") for records in logs.values() for r in records):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    for (name, records), colour in zip(logs.items(), ("#2c7fb8", "#d95f0e"), strict=False):
        for kind, style in (("train", "-"), ("val", "o--")):
            points = [(r["step"], r["loss"]) for r in records
                      if r.get("kind") == kind and isinstance(r.get("loss"), (int, float))]
            if points:
                ax.plot(*zip(*points, strict=True), style, color=colour, lw=1.2, ms=4,
                        label=f"{labels[name]} {'train' if kind == 'train' else 'val (BDD100K)'}")
    ax.set(title="Caption loss: same model and recipe, two training sets", xlabel="optimizer step",
           ylabel="loss (cross-entropy per token)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out_file)
    plt.close(fig)
    return out_file


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def comparison_rows(runs: dict[str, dict]) -> list[dict]:
    """Rows of the table: {"metric", one value per run, "notes": {run: note}, "majority"}."""
    rows = []

    def add(metric: str, values: dict[str, float | None], notes: dict[str, str] | None = None,
            majority: float | None = None) -> None:
        rows.append({"metric": metric, **values, "notes": notes or {}, "majority": majority})

    add("training frames", {name: run["train_frames"] for name, run in runs.items()})
    add("optimizer steps", {name: run["steps"] for name, run in runs.items()})
    add("final train loss", {name: run["final_train_loss"] for name, run in runs.items()})
    add("final val loss (BDD100K val)", {name: run["final_val_loss"] for name, run in runs.items()})
    for metric in ("CIDEr", "BLEU-4"):
        add(metric, {name: run["metrics"]["captioning"][metric] for name, run in runs.items()})
    any_metrics = next(iter(runs.values()))["metrics"]
    for key in ATTRIBUTE_KEYS:
        add(f"{ATTRIBUTE_NAMES[key]} accuracy", {name: run["metrics"][key]["accuracy"] for name, run in runs.items()},
            {name: NOT_TRAINED for name, run in runs.items() if not run["trained_attributes"][key]},
            any_metrics[key]["majority_rate"])
    for key, value in EDGE_VALUES:
        support = any_metrics[key]["per_value"].get(value, {}).get("support", 0)
        add(f"{ATTRIBUTE_NAMES[key]} = {value} accuracy (n={support})",
            {name: run["metrics"][key]["per_value"].get(value, {}).get("accuracy") for name, run in runs.items()},
            {name: NOT_TRAINED for name, run in runs.items() if not run["trained_attributes"][key]})
    add("object-mention recall", {name: run["metrics"]["objects"]["recall"] for name, run in runs.items()})
    add("object-mention precision", {name: run["metrics"]["objects"]["precision"] for name, run in runs.items()})
    return rows


def format_markdown(rows: Sequence[dict], runs: dict[str, dict], labels: dict[str, str], eval_text: str,
                    plot: Path | None) -> str:
    names = list(runs)
    lines = [f"# {' vs '.join(labels[n] for n in names)}: same model and recipe, scored on BDD100K val", "",
             eval_text, "",
             "| metric | " + " | ".join(f"trained on {labels[n]}" for n in names) + " | majority class |",
             "|---|" + "---:|" * (len(names) + 1)]
    for row in rows:
        cells = []
        for name in names:
            value = row[name]
            text = str(value) if isinstance(value, int) else _fmt(value)
            if name in row["notes"]:
                text += f" ({row['notes'][name]})"
            cells.append(text)
        majority = _fmt(row["majority"]) if row["majority"] is not None else ""
        lines.append(f"| {row['metric']} | " + " | ".join(cells) + f" | {majority} |")
    lines += ["", "Accuracy counts frames whose caption states the labelled value; *majority class* is the rate of "
              "always saying the most common value. Cityscapes labels no weather and no time of day, so a model "
              f"trained on it never read them in a caption (\"{NOT_TRAINED}\"): what it scores there is chance."]
    steps = {runs[n]["steps"] for n in names}
    if len(steps) > 1:
        lines += ["", "Note: the runs took different numbers of optimizer steps (an epoch limit ended the smaller "
                  "training set first); raise --epochs so that --max_steps ends both, as the committed recipes do."]
    if plot is not None:
        lines += ["", f"![training and validation loss]({plot.name})"]
    return "\n".join(lines) + "\n"


def compare(args: argparse.Namespace, overrides: Sequence[str], say: Callable[[str], None] = tqdm.write) -> dict:
    """Train both runs, evaluate both, write the table; returns the comparison dict."""
    configs = run_configs(args, overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = {name: label for name, label, _ in RUNS}
    runs: dict[str, dict] = {}
    for name, config in configs.items():  # train both first: under DDP every process takes part in both
        say(f"== {labels[name]}: training -> {config.train.out_dir}")
        run = setup(config, say)
        trained = {key: any(getattr(frame, key) != UNDEFINED for frame in run.train_split.frames)
                   for key in ATTRIBUTE_KEYS}
        frames, train_root = len(run.train_split), str(run.train_split.root)
        result = fit(run)
        del run
        checkpoint = result.best or result.last
        runs[name] = {"dataset": name, "train_root": train_root, "train_frames": frames,
                      "steps": result.state.global_step, "checkpoint": str(checkpoint),
                      "log_file": str(result.log_file), "trained_attributes": trained}
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    splits: dict[tuple[int, int], CaptionSplit] = {}
    logs = {}
    for name, config in configs.items():
        say(f"== {labels[name]}: scoring {runs[name]['checkpoint']} on {config.data.data_root} "
            f"{config.data.val_split}")
        run_out = Path(config.train.out_dir)
        runs[name]["metrics"] = evaluate_run(Path(runs[name]["checkpoint"]), config, run_out / "eval",
                                             args.max_eval_frames, splits, config.train.progress)
        runs[name]["metrics_file"] = str(run_out / "eval" / "metrics.json")
        logs[name] = read_log(runs[name]["log_file"])
        runs[name]["final_train_loss"] = _last(logs[name], "train")
        runs[name]["final_val_loss"] = _last(logs[name], "val")
    split = next(iter(splits.values()))
    eval_text = (f"Each run's best checkpoint (by validation CIDEr) captioned {len(split)} frames of "
                 f"{split.label_file}.")
    plot = plot_losses(logs, labels, out / "loss.png")
    rows = comparison_rows(runs)
    comparison = {
        "eval": {"data_root": str(split.root), "split": split.split, "frames": len(split)},
        "runs": {name: {**{k: v for k, v in run.items() if k != "metrics"},
                        "CIDEr": run["metrics"]["captioning"]["CIDEr"],
                        "BLEU-4": run["metrics"]["captioning"]["BLEU-4"],
                        "attributes": {key: {"accuracy": run["metrics"][key]["accuracy"],
                                             "in_training_captions": run["trained_attributes"][key],
                                             "per_value": run["metrics"][key]["per_value"]}
                                       for key in ATTRIBUTE_KEYS}}
                 for name, run in runs.items()},
        "rows": rows, "loss_plot": str(plot) if plot else None,
    }
    (out / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
    (out / "comparison.md").write_text(format_markdown(rows, runs, labels, eval_text, plot), encoding="utf-8")
    return comparison


def main(argv: Sequence[str] | None = None) -> int:
    quiet_transformers()
    args, overrides = build_parser().parse_known_args(argv)
    try:
        comparison = compare(args, overrides)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if comparison:
        out = Path(args.out)
        print((out / "comparison.md").read_text(encoding="utf-8"))
        print(f"table: {out / 'comparison.md'}, {out / 'comparison.json'}; loss curves: {comparison['loss_plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
