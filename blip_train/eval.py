"""Caption a split with a BLIP model and score it: `blip-eval --checkpoint DIR [--baseline MODEL]`.

Writes, to --out (default: the checkpoint directory):
    metrics.json            BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap; SPICE left out: it needs the network),
                            time of day / weather / scene accuracy with per-value breakdown and majority-class rate,
                            object-class mention recall and precision
    captions.jsonl          per frame: name, reference, caption, the attributes stated
With --baseline MODEL also metrics_baseline.json, captions_baseline.jsonl and report/ (HTML + PNG before/after).
Data root, split and caption seed default to those in the checkpoint's training_config.yaml; prompt, max_new_tokens
and num_beams to what the checkpoint records (caption_prompt.json, generation_config.json), as on the vehicle.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from blip_caption_ros.backends.caption_settings import (
    PROMPT_FILE,
    SETTINGS,
    CaptionSettingsError,
    model_caption_settings,
)
from blip_caption_ros.backends.decoding import captions_from_ids
from blip_caption_ros.progress import progress_bar
from blip_train.attributes import detect_attributes
from blip_train.captions import caption_frame
from blip_train.checkpoint import TRAINER_STATE, TRAINING_CONFIG, CheckpointError, load_blip, quiet_transformers
from blip_train.config import EvalSettings, GenerationSettings, TrainingConfig
from blip_train.data import CaptionCollator, CaptionDataset, CaptionSplit, DataError, ImageSet, ImageSpec
from blip_train.dataclass_args import ConfigError, config_from_dict, load_recipe, parse_config_explicit
from blip_train.metrics import evaluate_captions

#: Attribute values the summary also reports one by one: conditions a vehicle meets rarely and needs described most.
EDGE_VALUES = (("timeofday", "night"), ("weather", "rainy"), ("weather", "snowy"), ("weather", "foggy"))


def model_image_spec(model, processor) -> ImageSpec:
    """The processor's pixel transform at the size the model's vision tower expects."""
    spec = ImageSpec.from_processor(processor)
    size = int(model.config.vision_config.image_size)
    return replace(spec, size=(size, size))


@torch.no_grad()
def generate_captions(model, processor, images: ImageSet, prompt: str = "", max_new_tokens: int = 96,
                      num_beams: int = 1, batch_size: int = 64, device: torch.device | str | None = None,
                      progress: bool = False, desc: str = "captioning") -> list[str]:
    """One caption per image, the prompt stripped; batched, greedy unless num_beams > 1."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    tokenizer = processor.tokenizer
    prompt_ids = torch.tensor([tokenizer(prompt).input_ids], device=device)
    kept = prompt_ids.shape[1] - 1  # generate drops the prompt's trailing [SEP]
    max_new_tokens = min(max_new_tokens, model.config.text_config.max_position_embeddings - kept)
    loader = torch.utils.data.DataLoader(CaptionDataset(images), batch_size=batch_size, shuffle=False,
                                         collate_fn=CaptionCollator(model_image_spec(model, processor),
                                                                    with_text=False))
    captions: list[str] = []
    try:
        for batch in progress_bar(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            pixel_values = batch["pixel_values"].to(device)
            input_ids = prompt_ids.repeat(pixel_values.shape[0], 1)
            output = model.generate(pixel_values=pixel_values, input_ids=input_ids,
                                    max_new_tokens=max_new_tokens, num_beams=num_beams)
            captions.extend(captions_from_ids(tokenizer, output, prompt))
    finally:
        model.train(was_training)
    return captions


def reference_captions(split: CaptionSplit, caption_seed: int, per_frame: int) -> list[list[str]]:
    """The training caption plus other phrasings of the same facts (seeds caption_seed+1, +2 ...)."""
    return [[caption] + [caption_frame(frame, caption_seed + k) for k in range(1, per_frame)]
            for caption, frame in zip(split.captions, split.frames, strict=True)]


def score_split(captions: Sequence[str], split: CaptionSplit, caption_seed: int, references_per_frame: int = 5,
                meteor: bool = True, ptb: bool = True) -> dict:
    refs = reference_captions(split, caption_seed, references_per_frame)
    metrics = evaluate_captions(captions, refs, split.frames, meteor=meteor, ptb=ptb)
    metrics["references_per_frame"] = references_per_frame
    return metrics


def caption_rows(captions: Sequence[str], split: CaptionSplit) -> list[dict]:
    return [{"name": frame.name, "reference": reference, "caption": caption,
             "labels": frame.attributes, "stated": detect_attributes(caption)}
            for caption, reference, frame in zip(captions, split.captions, split.frames, strict=True)]


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def write_scores(out_dir: Path, metrics: dict, captions: Sequence[str], split: CaptionSplit,
                 suffix: str = "") -> Path:
    """out_dir/metrics{suffix}.json and captions{suffix}.jsonl; returns the metrics file."""
    metrics_file = out_dir / f"metrics{suffix}.json"
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_jsonl(out_dir / f"captions{suffix}.jsonl", caption_rows(captions, split))
    return metrics_file


def evaluate_model(model, processor, split: CaptionSplit, generation: GenerationSettings, caption_seed: int,
                   model_name: str, references_per_frame: int = 5, progress: bool = False,
                   prompt: str | None = None) -> tuple[dict, list[str]]:
    """Caption every frame of `split` and score the captions: (metrics dict, captions)."""
    prompt = generation.prompt if prompt is None else prompt
    start = time.perf_counter()
    captions = generate_captions(model, processor, split.images, prompt=prompt,
                                 max_new_tokens=generation.max_new_tokens, num_beams=generation.num_beams,
                                 batch_size=generation.eval_batch_size, progress=progress,
                                 desc=f"captioning with {Path(model_name).name or model_name}")
    generation_s = time.perf_counter() - start
    metrics = {"model": model_name, "data_root": str(split.root), "split": split.split,
               "skipped_images": [path for path, _ in split.skipped],
               "generation": {"prompt": prompt, "max_new_tokens": generation.max_new_tokens,
                              "num_beams": generation.num_beams, "seconds": round(generation_s, 2)},
               **score_split(captions, split, caption_seed, references_per_frame)}
    return metrics, captions


def format_summary(metrics: dict, baseline: dict | None = None) -> str:
    """A small plain-text table: each figure, the baseline's, and the majority-class rate for attributes."""
    lines = []
    header = f"{'':26}{'fine-tuned':>11}" + (f"{'baseline':>11}" if baseline else "") + f"{'majority':>11}"
    lines.append(header)

    def fmt(value: float | None) -> str:
        return f"{value:11.3f}" if value is not None else f"{'-':>11}"

    names = {"timeofday": "time-of-day accuracy", "weather": "weather accuracy", "scene": "scene accuracy"}
    for key, label in names.items():
        row = f"{label:26}{fmt(metrics[key]['accuracy'])}"
        if baseline:
            row += fmt(baseline[key]["accuracy"])
        lines.append(row + fmt(metrics[key]["majority_rate"]))
    for key, value in EDGE_VALUES:  # per-value accuracy (recall) of the rare conditions, where the split has them
        if value in metrics[key]["per_value"]:
            label = f"  {value} (n={metrics[key]['per_value'][value]['support']})"
            row = f"{label:26}{fmt(metrics[key]['per_value'][value]['accuracy'])}"
            if baseline:
                row += fmt(baseline[key]["per_value"].get(value, {}).get("accuracy"))
            lines.append(row)
    for key, label in (("recall", "object-mention recall"), ("precision", "object-mention precision")):
        lines.append(f"{label:26}{fmt(metrics['objects'][key])}" + (fmt(baseline["objects"][key]) if baseline else ""))
    for name, value in metrics["captioning"].items():
        lines.append(f"{name:26}{fmt(value)}" + (fmt(baseline["captioning"][name]) if baseline else ""))
    return "\n".join(lines)


def _checkpoint_training_config(checkpoint: str) -> TrainingConfig | None:
    path = Path(checkpoint) / TRAINING_CONFIG
    if not path.is_file():
        return None
    return config_from_dict(TrainingConfig, load_recipe(path), str(path))


def run(settings: EvalSettings, explicit: set[str], progress: bool = True) -> dict:
    """Evaluate the checkpoint (and the baseline), write metrics, captions and the report; returns metrics."""
    from blip_train.report import write_report
    from blip_train.splits import load_val_split

    options = settings.eval
    data, generation = settings.data, settings.generation
    trained = _checkpoint_training_config(options.checkpoint)
    if trained is not None:  # unset flags follow what the model was trained with
        data = replace(trained.data, **{k: getattr(data, k) for k in vars(data) if k in explicit})
        generation = replace(trained.generation,
                             **{k: getattr(generation, k) for k in vars(generation) if k in explicit})
    generation = _recorded_generation(options.checkpoint, generation, explicit)
    if not data.data_root:
        raise ConfigError("--data_root is required (the checkpoint's training_config.yaml names none)")
    out_dir = Path(options.out or options.checkpoint)
    if not Path(options.checkpoint).exists() and options.out is None:
        out_dir = Path("runs") / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    model, processor = load_blip(options.checkpoint, "--checkpoint")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    split = load_val_split(data, model_image_spec(model, processor).size, options.max_frames, progress)
    metrics, captions = evaluate_model(model, processor, split, generation, data.caption_seed, options.checkpoint,
                                       data.references_per_frame, progress=progress)
    metrics_file = write_scores(out_dir, metrics, captions, split)
    result = {"metrics": metrics, "metrics_file": str(metrics_file), "baseline": None, "report": None}
    if options.baseline:
        del model
        base_model, base_processor = load_blip(options.baseline, "--baseline")
        base_model.to(device)
        base_split = split
        base_size = model_image_spec(base_model, base_processor).size
        if base_size != split.images.size:
            base_split = load_val_split(data, base_size, options.max_frames, progress)
            if [f.name for f in base_split.frames] != [f.name for f in split.frames]:
                raise DataError(f"{data.data_root}: the baseline's image size left a different set of readable "
                                "frames; compare on a split without unreadable images")
        prompt = generation.prompt if options.baseline_prompt is None else options.baseline_prompt
        base_metrics, base_captions = evaluate_model(base_model, base_processor, base_split, generation,
                                                     data.caption_seed, options.baseline, data.references_per_frame,
                                                     progress=progress, prompt=prompt)
        write_scores(out_dir, base_metrics, base_captions, base_split, suffix="_baseline")
        log_file = options.train_log or _log_file_of(options.checkpoint)
        report = write_report(out_dir / "report", split, captions, base_captions, metrics, base_metrics,
                              log_file=log_file, samples=options.report_samples,
                              names=(Path(options.checkpoint).name, Path(options.baseline).name or options.baseline))
        result.update(baseline=base_metrics, report=report)
    return result


def _recorded_generation(checkpoint: str, generation: GenerationSettings, explicit: set[str]) -> GenerationSettings:
    """Unset --prompt/--max_new_tokens/--num_beams follow what the checkpoint records, as the node and caption-bag
    do, so the scores describe the captions a vehicle publishes; a flag that differs is said once."""
    if not (Path(checkpoint) / PROMPT_FILE).is_file():
        return generation
    try:
        recorded = model_caption_settings(checkpoint)
    except CaptionSettingsError as exc:
        raise CheckpointError(str(exc)) from None
    given = {name: getattr(generation, name) for name in SETTINGS if name in explicit}
    for note in recorded.overrides(**given):
        print(f"note: overriding the checkpoint's caption settings: {note}", file=sys.stderr)
    return replace(generation, **{name: getattr(recorded, name) for name in SETTINGS if name not in explicit})


def _log_file_of(checkpoint: str) -> str | None:
    path = Path(checkpoint) / TRAINER_STATE
    if path.is_file():
        try:
            log = json.loads(path.read_text(encoding="utf-8")).get("log_file")
        except ValueError:
            return None
        if log and Path(log).is_file():
            return log
    return None


def main(argv: Sequence[str] | None = None) -> int:
    quiet_transformers()
    try:
        settings, explicit = parse_config_explicit(EvalSettings, argv, prog="blip-eval",
                                                   description=__doc__.split("\n\n")[0])
        result = run(settings, explicit)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result["metrics"], result["baseline"]))
    print(f"metrics: {result['metrics_file']}")
    if result["report"]:
        print(f"report: {result['report']['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

