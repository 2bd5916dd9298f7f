"""Fine-tune BLIP on BDD100K-derived captions: `blip-train --data_root ROOT [--config recipe.yaml] [flags]`.

Shape as litgpt's finetune scripts: `main` parses and reports, `setup` builds the accelerator, model, data and
optimizer, `fit` runs the loop, `validate` scores the model. Accelerate does precision and distribution, so
`accelerate launch -m blip_train.train ...` or `torchrun --nproc_per_node N -m blip_train.train ...` trains with DDP
unchanged. Captions follow LAVIS: the decoder starts from the bos token [DEC], the prompt ("a picture of ") and
padding are masked out of the loss. Validation (CIDEr, attribute accuracy, loss) runs on the main process every
`--eval_every` steps or at each epoch end; it writes checkpoints/last (resumable) and checkpoints/best (best CIDEr).
Every checkpoint records how it captions (blip_caption_ros.backends.caption_settings): its prompt
(caption_prompt.json) and,
in generation_config.json, num_beams and max_new_tokens = --max_new_tokens raised, where needed, to cover the
longest training caption plus a margin, so no caption a vehicle publishes is cut mid-sentence. Validation captions
with exactly these settings.
A NaN/inf loss or gradient norm stops the run before the update (`--nonfinite_loss skip`: drops that update instead).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from blip_caption_ros.backends.decoding import prompt_tokens
from blip_caption_ros.progress import progress_bar
from blip_train.balanced_sampling import training_sampler
from blip_train.checkpoint import (
    CheckpointError,
    TrainerState,
    begin_checkpoint,
    commit_checkpoint,
    discard_staging,
    find_checkpoint,
    load_blip,
    load_training_state,
    quiet_transformers,
    staging_dir,
    write_checkpoint,
    write_rng_state,
)
from blip_train.config import ARCHITECTURES, TrainingConfig
from blip_train.data import (
    CaptionCollator,
    CaptionDataset,
    CaptionSplit,
    DataError,
    EpochSampler,
)
from blip_train.dataclass_args import ConfigError, parse_config
from blip_train.eval import generate_captions, model_image_spec, score_split
from blip_train.splits import load_splits

LOG_FILE = "train_log.jsonl"


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf (--nonfinite_loss stop, or too many consecutive skipped steps)."""


@dataclass
class TrainResult:
    out_dir: Path
    last: Path
    best: Path | None
    log_file: Path
    state: TrainerState
    seconds: float
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)  # validation records of this invocation


@dataclass
class _Run:
    """What setup builds and fit uses."""

    config: TrainingConfig
    accelerator: object
    model: torch.nn.Module
    processor: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_loader: torch.utils.data.DataLoader
    sampler: EpochSampler
    train_split: CaptionSplit
    val_split: CaptionSplit
    collator: CaptionCollator
    state: TrainerState
    steps_per_epoch: int
    total_steps: int
    out_dir: Path
    log_file: Path
    say: Callable[[str], None]
    max_new_tokens: int
    """What the checkpoints record and validation uses (see caption_length)."""


# --- setup ----------------------------------------------------------------------------------------------------------


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up to the peak, then cosine / linear decay to `min_ratio` of it (or constant)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * decay

    return factor


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only, not on biases and norm scales (as LAVIS)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resolve_resume(config: TrainingConfig) -> Path | None:
    resume = config.train.resume
    if not resume:
        return None
    if resume == "auto":  # `last`, or the previous one when a crash came in the middle of replacing it
        return find_checkpoint(Path(config.train.out_dir) / "checkpoints" / "last")
    path = find_checkpoint(resume)
    if path is None:
        raise CheckpointError(f"--resume {resume}: checkpoint directory not found")
    return path


def caption_length(tokenizer, captions: Sequence[str], prompt: str, wanted: int, max_positions: int) -> tuple[int, int]:
    """(max_new_tokens, longest caption in tokens incl. its closing [SEP]): at least `wanted`, and the longest
    caption plus a margin (10 %, at least 4 tokens), within the model's position embeddings."""
    longest = max((len(ids) for ids in tokenizer(list(captions), add_special_tokens=False).input_ids), default=0) + 1
    room = max_positions - prompt_tokens(tokenizer, prompt)
    return min(room, max(wanted, longest + max(4, longest // 10))), longest


def build_model(config: TrainingConfig, resume_dir: Path | None, out_dir: Path, accelerator):
    """(model, processor): from the resumed checkpoint, built from scratch (--arch), or loaded from --model."""
    if resume_dir is not None:
        return load_blip(str(resume_dir), "--resume")
    if config.model.arch is None:
        return load_blip(config.model.model, "--model")
    from blip_train.captions import caption_vocabulary
    from blip_train.modeling import build_blip

    init_dir = out_dir / "init"
    if accelerator.is_main_process:  # the untrained model stays on disk: the demo's "before" baseline
        words = caption_vocabulary() + config.generation.prompt.lower().split()
        build_blip(words, init_dir, ARCHITECTURES[config.model.arch], seed=config.train.seed)
    accelerator.wait_for_everyone()
    return load_blip(str(init_dir), "--arch")


def setup(config: TrainingConfig, say: Callable[[str], None] = tqdm.write) -> _Run:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    missing = config.data.missing_inputs()
    if missing:
        raise ConfigError(missing)
    if config.optim.precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("--precision fp16 needs a CUDA device; use bf16 or no on CPU")
    # Accelerate distributes over CPU processes (gloo) only when told to run on the CPU: a torchrun/accelerate
    # launch on a machine without CUDA would otherwise train N independent copies.
    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    # Accelerate keeps precision settings in a process-wide singleton; a second train() in the same process (the
    # demo, tests, notebooks) may ask for other ones. The distributed state (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=config.optim.precision, cpu=cpu_ddp,
                              gradient_accumulation_steps=config.optim.grad_accum)
    if not accelerator.is_main_process:
        say = _silent
    out_dir = Path(config.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_dir = resolve_resume(config)
    state = TrainerState.load(resume_dir) if resume_dir else TrainerState()
    set_seed(config.train.seed)
    model, processor = build_model(config, resume_dir, out_dir, accelerator)
    if config.optim.label_smoothing is not None:
        model.config.text_config.label_smoothing = config.optim.label_smoothing
        model.text_decoder.label_smoothing = config.optim.label_smoothing
    spec = model_image_spec(model, processor)
    if config.data.image_size is not None and config.data.image_size != spec.size[0]:
        raise ConfigError(f"--image_size {config.data.image_size} differs from the model's vision input "
                          f"{spec.size[0]} px; leave it unset or pick a model built for that size")
    data = config.data
    with accelerator.main_process_first():  # one process builds the image caches, the others reuse them
        train_split, val_split, notes = load_splits(data, spec.size,
                                                    progress=config.train.progress and accelerator.is_main_process)
    for split in (train_split, val_split):
        say(split.summary())
        for line in split.report.warnings():
            say(f"warning: {line}")
        for path, reason in split.skipped[:5]:
            say(f"warning: skipped {path}: {reason}")
    for line in notes:
        say(f"warning: {line}")
    bos = model.config.text_config.bos_token_id
    max_length = min(data.max_text_length, model.config.text_config.max_position_embeddings)
    if max_length < data.max_text_length:
        say(f"note: captions truncated to {max_length} tokens, the model's max_position_embeddings")
    collator = CaptionCollator(spec, processor.tokenizer, bos, config.generation.prompt, max_length)
    max_new_tokens, longest = caption_length(processor.tokenizer, train_split.captions, config.generation.prompt,
                                             config.generation.max_new_tokens,
                                             model.config.text_config.max_position_embeddings)
    if max_new_tokens != config.generation.max_new_tokens:
        say(f"note: captions up to {max_new_tokens} tokens (the longest training caption has {longest}); "
            "checkpoints record that")
    model.generation_config.max_new_tokens = max_new_tokens  # save_pretrained writes generation_config.json
    model.generation_config.num_beams = config.generation.num_beams
    # Same (seed, epoch) -> same order or draws in every process; Accelerate shards the batches between them.
    sampler, sampling = training_sampler(train_split, data, config.train.seed)
    for line in sampling:
        say(line)
    train_loader = torch.utils.data.DataLoader(
        CaptionDataset(train_split.images, train_split.captions), batch_size=config.train.batch_size,
        sampler=sampler, collate_fn=collator, num_workers=data.num_workers, drop_last=False,
        persistent_workers=data.num_workers > 0)
    optimizer = torch.optim.AdamW(_param_groups(model, config.optim.weight_decay), lr=config.optim.lr)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / config.optim.grad_accum)
    total_steps = steps_per_epoch * config.train.epochs
    if config.train.max_steps is not None:
        total_steps = min(total_steps, config.train.max_steps)
    warmup = config.optim.warmup_steps or int(config.optim.warmup_ratio * total_steps)
    # Not passed to accelerator.prepare: it would step the schedule once per process per optimizer step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, warmup, config.optim.schedule, config.optim.min_lr_ratio))
    if resume_dir is not None:
        load_training_state(resume_dir, optimizer, scheduler, accelerator.process_index)
        say(f"resumed from {resume_dir} at step {state.global_step} (epoch {state.epoch + 1}, "
            f"batch {state.batch_in_epoch})")
    log_file = out_dir / LOG_FILE
    if accelerator.is_main_process:
        _truncate_log(log_file, state.global_step)
    state.log_file = str(log_file)
    return _Run(config, accelerator, model, processor, optimizer, scheduler, train_loader, sampler, train_split,
                val_split, collator, state, steps_per_epoch, total_steps, out_dir, log_file, say, max_new_tokens)


def _silent(_: str) -> None:
    pass


def _truncate_log(log_file: Path, step: int) -> None:
    """Keep the log records up to `step`: a resumed run continues the log instead of duplicating steps."""
    if not log_file.is_file():
        return
    if step == 0:
        log_file.unlink()
        return
    kept = []
    for line in log_file.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue  # a line cut short by a crash
    log_file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


# --- fit and validate -----------------------------------------------------------------------------------------------


def _log(run: _Run, record: dict) -> None:
    if run.accelerator.is_main_process:
        with run.log_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


@torch.no_grad()
def validation_loss(model, split: CaptionSplit, collator: CaptionCollator, batch_size: int) -> float:
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(CaptionDataset(split.images, split.captions), batch_size=batch_size,
                                         collate_fn=collator)
    was_training = model.training
    model.eval()
    total = weight = 0.0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * tokens
        weight += tokens
    model.train(was_training)
    return total / max(weight, 1)


def validate(run: _Run) -> dict:
    """Loss, CIDEr and attribute accuracy on the validation frames (main process)."""
    config, model = run.config, run.accelerator.unwrap_model(run.model)
    start = time.perf_counter()
    with run.accelerator.autocast():
        loss = validation_loss(model, run.val_split, run.collator, config.generation.eval_batch_size)
        captions = generate_captions(model, run.processor, run.val_split.images, prompt=config.generation.prompt,
                                     max_new_tokens=run.max_new_tokens, num_beams=config.generation.num_beams,
                                     batch_size=config.generation.eval_batch_size)
    # The Python tokenizer and no METEOR: validation needs no Java; blip-eval reports the PTB-tokenised figures.
    metrics = score_split(captions, run.val_split, config.data.caption_seed, config.data.references_per_frame,
                          meteor=False, ptb=False)
    return {"loss": loss, "CIDEr": metrics["captioning"]["CIDEr"], "BLEU-4": metrics["captioning"]["BLEU-4"],
            "timeofday_accuracy": metrics["timeofday"]["accuracy"], "weather_accuracy": metrics["weather"]["accuracy"],
            "scene_accuracy": metrics["scene"]["accuracy"], "object_recall": metrics["objects"]["recall"],
            "frames": len(captions), "example": captions[0] if captions else "",
            "seconds": round(time.perf_counter() - start, 2)}


def save(run: _Run, name: str, with_training_state: bool) -> Path:
    """Write checkpoints/<name> atomically: the main process writes weights, every process its RNG state."""
    accelerator = run.accelerator
    final = run.out_dir / "checkpoints" / name
    if accelerator.is_main_process:
        begin_checkpoint(final)
    accelerator.wait_for_everyone()
    staging = staging_dir(final)
    if with_training_state:
        write_rng_state(staging, accelerator.process_index)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_checkpoint(staging, accelerator.unwrap_model(run.model), run.processor, run.config, run.state,
                         run.optimizer if with_training_state else None, run.scheduler)
        commit_checkpoint(staging, final)
    accelerator.wait_for_everyone()
    return final


def _validate_and_checkpoint(run: _Run, epoch_progress: float, history: list[dict]) -> bool:
    """Validate, update best/last; True when early stopping says to stop."""
    accelerator, state, config = run.accelerator, run.state, run.config
    stop = torch.zeros(1, device=accelerator.device)
    improved = False
    if accelerator.is_main_process:
        metrics = validate(run)
        record = {"kind": "val", "step": state.global_step, "epoch": round(epoch_progress, 3), **metrics}
        _log(run, record)
        history.append(record)
        cider = metrics["CIDEr"]
        improved = state.best_metric is None or cider > state.best_metric
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = cider, state.global_step, 0
        else:
            state.evals_without_improvement += 1
        state.val_metrics = {k: v for k, v in metrics.items() if k != "example"}
        patience = config.train.early_stopping_patience
        if patience is not None and state.evals_without_improvement >= patience:
            stop += 1
        run.say(f"step {state.global_step}: val loss {metrics['loss']:.3f}  CIDEr {cider:.3f}  "
                f"time-of-day {metrics['timeofday_accuracy']:.2f}  weather {metrics['weather_accuracy']:.2f}  "
                f"scene {metrics['scene_accuracy']:.2f}" + ("  (best)" if improved else "")
                + f"\n    e.g. {metrics['example']!r}")
    improved = bool(accelerator.reduce(torch.tensor([float(improved)], device=accelerator.device), "sum") > 0)
    if improved:
        save(run, "best", with_training_state=False)
    save(run, "last", with_training_state=True)
    return bool(accelerator.reduce(stop, "sum") > 0)


def _token_share(accelerator, labels: torch.Tensor) -> torch.Tensor | float:
    """Loss weight that makes DDP's gradient the token mean of the whole global batch.

    The model's loss is the mean over this process's caption tokens and DDP averages gradients over processes, which
    would weight a token by 1/(its process's tokens). Scaling each loss by (its tokens x processes / all tokens)
    gives every token of the global batch the same weight, as one process holding the whole batch does.
    """
    if accelerator.num_processes == 1:
        return 1.0
    tokens = (labels[:, 1:] != -100).sum().float()  # the decoder predicts labels[:, 1:]
    return tokens * accelerator.num_processes / accelerator.reduce(tokens.clone(), "sum")


def _nonfinite_reason(accelerator, step_loss: torch.Tensor, grad_norm) -> str | None:
    """'loss' or 'grad_norm' when either is NaN/inf on any process (all processes get the same answer), else None.

    Under fp16 an infinite gradient norm is the grad scaler's business (it skips that step and lowers the scale).
    """
    grad_bad = (grad_norm is not None and accelerator.scaler is None
                and not math.isfinite(float(grad_norm)))
    flags = torch.tensor([float(not torch.isfinite(step_loss)), float(grad_bad)], device=accelerator.device)
    if accelerator.num_processes > 1:
        flags = accelerator.reduce(flags, "sum")
    if flags[0] > 0:
        return "loss"
    return "grad_norm" if flags[1] > 0 else None


def _last_good_checkpoint(run: _Run) -> str:
    last = find_checkpoint(run.out_dir / "checkpoints" / "last")
    if last is None:
        return "No checkpoint was written before it."
    return (f"The last good checkpoint, {last} (step {TrainerState.load(last).global_step}), is untouched; "
            "--resume auto continues from it.")


def _handle_nonfinite(run: _Run, reason: str, step_loss: torch.Tensor, epoch_progress: float) -> None:
    """--nonfinite_loss stop: raise. skip: count and log the skipped step; raise after too many in a row."""
    state, optim = run.state, run.config.optim
    what = "non-finite loss" if reason == "loss" else "non-finite gradient norm"
    where = (f"step {state.global_step} (epoch {state.epoch + 1}, batch {state.batch_in_epoch} of "
             f"{len(run.train_loader)})")
    if optim.nonfinite_loss == "stop":
        raise NonFiniteLossError(f"{what} at {where}; stopped before the update. {_last_good_checkpoint(run)} "
                                 "Lower --lr, look for bad frames, or pass --nonfinite_loss skip")
    state.skipped_steps += 1
    state.consecutive_skips += 1
    loss = float(step_loss)
    _log(run, {"kind": "skip", "step": state.global_step, "epoch": round(epoch_progress, 3), "reason": reason,
               "loss": loss if math.isfinite(loss) else str(loss), "skipped_steps": state.skipped_steps,
               "consecutive": state.consecutive_skips})
    run.say(f"warning: {what} at {where}: update skipped ({state.skipped_steps} skipped so far)")
    if state.consecutive_skips > optim.max_nonfinite_skips:
        raise NonFiniteLossError(f"{state.consecutive_skips} consecutive steps with a non-finite loss or gradient "
                                 f"norm (the last at {where}), more than --max_nonfinite_skips "
                                 f"{optim.max_nonfinite_skips}. {_last_good_checkpoint(run)}")


SKIPPED_IMAGES_FILE = "skipped_images.tsv"


def _report_skipped_images(run: _Run) -> None:
    """End of run: how many unreadable images --max_bad_image_fraction let through; RUN/skipped_images.tsv lists all."""
    splits = (run.train_split, run.val_split)
    skipped = [(split.split, path, reason) for split in splits for path, reason in split.skipped]
    if not skipped or not run.accelerator.is_main_process:
        return
    listing = run.out_dir / SKIPPED_IMAGES_FILE
    listing.write_text("split\timage\treason\n" + "".join(f"{s}\t{p}\t{r}\n" for s, p, r in skipped), encoding="utf-8")
    counts = ", ".join(f"{split.split} {len(split.skipped)} of {len(split.skipped) + len(split)}"
                       for split in splits if split.skipped)
    run.say(f"warning: unreadable images skipped: {counts}; every one with its reason in {listing}")


def fit(run: _Run) -> TrainResult:
    """The training loop: epochs of accumulated steps, logging, validation, checkpoints, early stopping."""
    config, accelerator, state = run.config, run.accelerator, run.state
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    start = time.perf_counter()
    history: list[dict] = []
    stopped_early = False
    eval_every = config.train.eval_every
    log_every = config.train.log_every
    global_batch = config.train.batch_size * accelerator.num_processes
    if accelerator.is_main_process:
        for stale in discard_staging(run.out_dir / "checkpoints"):
            run.say(f"note: removed {stale}, a checkpoint that a crash left half-written")
    bar = progress_bar(total=run.total_steps, initial=state.global_step, desc="training", unit="step",
                       disable=not (config.train.progress and accelerator.is_main_process))
    zero = torch.zeros((), device=accelerator.device)
    window_loss, window_batches, window_steps, window_start = zero, 0, 0, time.perf_counter()
    step_loss, step_batches = zero, 0  # of the optimizer step being accumulated
    grad_norm = None
    _log(run, {"kind": "start", "step": state.global_step, "total_steps": run.total_steps,
               "steps_per_epoch": run.steps_per_epoch, "processes": accelerator.num_processes,
               "global_batch": global_batch * config.optim.grad_accum, "time": time.time()})
    model.train()
    validated_at = None
    while state.global_step < run.total_steps and not stopped_early:
        loader = run.train_loader
        if state.batch_in_epoch:
            loader = accelerator.skip_first_batches(loader, state.batch_in_epoch)
        # Accelerate's loaders re-seed the sampler with their own iteration count; the epoch decides the order.
        for epoch_aware in (run.sampler, run.train_loader, loader):
            if hasattr(epoch_aware, "set_epoch"):
                epoch_aware.set_epoch(state.epoch)
        for batch in loader:
            skipped = None
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss * _token_share(accelerator, batch["labels"]))
                step_loss = step_loss + loss.detach().float()
                step_batches += 1
                if accelerator.sync_gradients:
                    if config.optim.max_grad_norm is not None:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
                    skipped = _nonfinite_reason(accelerator, step_loss, grad_norm)
                    if skipped is None or accelerator.scaler is not None:
                        optimizer.step()  # fp16: the scaler sees the inf/nan gradients and skips the update itself
                    optimizer.zero_grad(set_to_none=True)
            state.batch_in_epoch += 1
            state.samples_seen += batch["pixel_values"].shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            # A skipped step still counts: the schedule, the step count and the data position move on as if its
            # update had been zero, so run length, evaluation steps and resume points do not depend on skips.
            with warnings.catch_warnings():  # torch's "scheduler before optimizer" warning when step 1 is skipped
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                scheduler.step()
            state.global_step += 1
            bar.update(1)
            epoch_progress = state.epoch + state.batch_in_epoch / len(run.train_loader)
            if skipped is None:
                state.consecutive_skips = 0
                window_loss, window_batches = window_loss + step_loss, window_batches + step_batches
            else:
                _handle_nonfinite(run, skipped, step_loss / step_batches, epoch_progress)
            step_loss, step_batches = zero, 0
            window_steps += 1
            if state.global_step % log_every == 0 or state.global_step == run.total_steps:
                mean_loss = float(accelerator.reduce(window_loss / max(window_batches, 1), "mean"))
                elapsed = time.perf_counter() - window_start
                record = {"kind": "train", "step": state.global_step, "epoch": round(epoch_progress, 3),
                          "loss": round(mean_loss, 5) if window_batches else None, "lr": scheduler.get_last_lr()[0],
                          "grad_norm": None if grad_norm is None or skipped else round(float(grad_norm), 4),
                          "samples": state.samples_seen, "skipped_steps": state.skipped_steps,
                          "steps_per_s": round(window_steps / elapsed, 2)}
                _log(run, record)
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{record['lr']:.2e}", epoch=f"{epoch_progress:.2f}")
                window_loss, window_batches, window_steps, window_start = zero, 0, 0, time.perf_counter()
            epoch_done = state.batch_in_epoch == len(run.train_loader)
            if epoch_done:  # counted here, not after the loop, so a checkpoint at the epoch's end says so
                state.epoch += 1
                state.batch_in_epoch = 0
            if eval_every and state.global_step % eval_every == 0 or not eval_every and epoch_done:
                stopped_early = _validate_and_checkpoint(run, epoch_progress, history)
                validated_at = state.global_step
            if stopped_early or state.global_step >= run.total_steps:
                break
        else:  # a resumed run that stopped exactly at an epoch's end
            if state.batch_in_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
    bar.close()
    if validated_at != state.global_step:
        _validate_and_checkpoint(run, state.epoch + state.batch_in_epoch / len(run.train_loader), history)
    if stopped_early:
        run.say(f"early stopping: no better CIDEr in {config.train.early_stopping_patience} validations")
    _report_skipped_images(run)
    if state.skipped_steps:
        run.say(f"warning: {state.skipped_steps} of {state.global_step} optimizer steps were skipped for a non-finite "
                f"loss or gradient norm (the 'skip' records of {run.log_file})")
    best = run.out_dir / "checkpoints" / "best"
    return TrainResult(run.out_dir, run.out_dir / "checkpoints" / "last", best if best.is_dir() else None,
                       run.log_file, state, time.perf_counter() - start, stopped_early, history)


def train(config: TrainingConfig, say: Callable[[str], None] = tqdm.write) -> TrainResult:
    """setup + fit: the whole of blip-train as a function (the demo calls it too)."""
    run = setup(config, say)
    if run.state.global_step >= run.total_steps:
        run.say(f"nothing to do: step {run.state.global_step} of {run.total_steps} already reached")
        best = run.out_dir / "checkpoints" / "best"
        return TrainResult(run.out_dir, run.out_dir / "checkpoints" / "last", best if best.is_dir() else None,
                           run.log_file, run.state, 0.0)
    run.say(f"training {run.total_steps - run.state.global_step} steps ({run.steps_per_epoch} per epoch, "
            f"{run.accelerator.num_processes} process(es), precision {run.config.optim.precision}) -> {run.out_dir}")
    return fit(run)


def _leave_process_group() -> None:
    """Close the gloo/NCCL group before exit, all ranks together: torchrun can hang otherwise at shutdown."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    quiet_transformers()
    try:
        config = parse_config(TrainingConfig, argv, prog="blip-train", description=__doc__.split("\n\n")[0],
                              epilog="Recipes: config/train/*.yaml. Flags override the recipe's values.")
        result = train(config)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # every rank reads the same data and flags, so every rank stops here
    except NonFiniteLossError as exc:  # every rank decides on the same reduced flag, at the same step
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {exc}", file=sys.stderr)
        _leave_process_group()
        return 1
    _leave_process_group()
    if int(os.environ.get("RANK", "0")) != 0:  # one summary per run, not per process
        return 0
    best = (f"best CIDEr {result.state.best_metric:.3f} at step {result.state.best_step} -> {result.best}"
            if result.state.best_metric is not None else "no validation")
    skipped = f" ({result.state.skipped_steps} skipped: non-finite loss)" if result.state.skipped_steps else ""
    print(f"done: {result.state.global_step} steps{skipped} in {result.seconds:.0f} s; {best}; last -> {result.last}; "
          f"log -> {result.log_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
