"""blip-train end to end on a few generated frames with a tiny random BLIP: config, batches, checkpoints, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from blip_caption_ros.backends.decoding import prompt_tokens
from blip_train.checkpoint import TRAINER_STATE, TRAINING_CONFIG, TrainerState
from blip_train.config import TrainingConfig
from blip_train.data import CaptionCollator, ImageSpec, load_caption_split
from blip_train.dataclass_args import ConfigError, config_from_dict, parse_config
from blip_train.modeling import TINY, build_processor, build_tokenizer
from blip_train.train import LOG_FILE, lr_lambda, main, train
from test.support import REPO
from test.training_helpers import read_log, tiny_args, tiny_config

# --- configuration --------------------------------------------------------------------------------------------------


def test_seed_flags_and_recipe_precedence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"optim": {"lr": 3e-4, "weight_decay": 0.1}, "epochs": 7, "batch_size": 4}))
    config = parse_config(TrainingConfig, ["--config", str(recipe), "--epochs", "50", "--batch_size", "16"],
                          "blip-train", "")
    assert (config.train.epochs, config.train.batch_size) == (50, 16)  # flags beat the recipe
    assert (config.optim.lr, config.optim.weight_decay) == (3e-4, 0.1)  # the recipe beats the defaults
    assert config.optim.schedule == "cosine"


def test_all_argument_problems_reported_at_once(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: -1\n  bogus: 3\n")
    with pytest.raises(ConfigError) as info:
        parse_config(TrainingConfig, ["--config", str(recipe), "--batch_size", "0", "--precision", "fp8",
                                      "--warmup_ratio", "x"], "blip-train", "")
    text = str(info.value)
    for flag in ("--lr", "--batch_size", "--precision", "--warmup_ratio", "optim.bogus"):
        assert flag in text
    assert len(info.value.problems) == 5


def test_unknown_flag_and_bad_choice_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--no_such_flag", "1"])
    assert info.value.code == 2
    assert main(["--precision", "fp8"]) == 2
    assert "--precision must be one of no, bf16, fp16" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted((REPO / "config" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_committed_recipes_load(recipe):
    config = config_from_dict(TrainingConfig, yaml.safe_load(recipe.read_text()), str(recipe))
    assert config.train.epochs > 0


def test_lavis_recipe_values():
    config = config_from_dict(TrainingConfig, yaml.safe_load(
        (REPO / "config" / "train" / "blip_base_bdd100k.yaml").read_text()))
    assert config.model.model == "Salesforce/blip-image-captioning-base"
    assert (config.optim.lr, config.train.epochs, config.data.image_size, config.train.batch_size,
            config.optim.weight_decay, config.generation.prompt) == (1e-5, 5, 384, 32, 0.05, "a picture of ")


def test_warmup_then_cosine():
    factor = lr_lambda(total_steps=100, warmup_steps=10, schedule="cosine", min_ratio=0.0)
    warm = [factor(s) for s in range(10)]
    assert warm == sorted(warm) and warm[-1] < 1.0
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0, abs=1e-9)


# --- batches --------------------------------------------------------------------------------------------------------


def test_collator_masks_prompt_and_padding_like_lavis(tmp_path):
    tokenizer = build_tokenizer(["a", "picture", "of", "car", "cars", "two", "ahead", "night"], tmp_path)
    processor = build_processor(tokenizer, 32)
    bos = tokenizer.convert_tokens_to_ids("[DEC]")
    collator = CaptionCollator(ImageSpec.from_processor(processor), tokenizer, bos, "a picture of ", 32)
    images = [torch.zeros(32, 32, 3, dtype=torch.uint8), torch.full((32, 32, 3), 255, dtype=torch.uint8)]
    batch = collator([{"image": images[0], "caption": "Two cars ahead.", "index": 0},
                      {"image": images[1], "caption": "Night.", "index": 1}])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["pixel_values"][0].mean() < 0 < batch["pixel_values"][1].mean()  # normalised with mean/std
    ids, labels = batch["input_ids"], batch["labels"]
    assert (ids[:, 0] == bos).all()
    n_prompt = prompt_tokens(tokenizer, "a picture of ")
    assert n_prompt == 4  # [DEC] a picture of
    assert (labels[:, :n_prompt] == -100).all()
    assert tokenizer.convert_ids_to_tokens(ids[0, n_prompt:].tolist()) == ["two", "cars", "ahead", ".", "[SEP]"]
    assert (labels[0, n_prompt:] == ids[0, n_prompt:]).all()
    pad = ids[1] == tokenizer.pad_token_id
    assert pad.any() and (labels[1][pad] == -100).all() and (batch["attention_mask"][1][pad] == 0).all()


# --- end to end: train -> resume -> eval ----------------------------------------------------------------------------


@pytest.mark.slow
def test_train_resume_eval_end_to_end(dataset, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(dataset, out, "--epochs", "1"), say=lambda _: None)
    assert result.state.global_step == 2  # 16 frames / batch 8
    last, best = out / "checkpoints" / "last", out / "checkpoints" / "best"
    for directory in (last, best):
        names = {p.name for p in directory.iterdir()}
        assert {"model.safetensors", "config.json", "processor_config.json", "tokenizer_config.json", "tokenizer.json",
                TRAINING_CONFIG, TRAINER_STATE} <= names, names
    assert {p.name for p in (last / "training_state").iterdir()} == {"optimizer.pt", "scheduler.pt",
                                                                      "rng_state_0.pt"}
    assert not (best / "training_state").exists()
    assert not list((out / "checkpoints").glob(".*"))  # no staging directories left behind
    saved = config_from_dict(TrainingConfig, yaml.safe_load((last / TRAINING_CONFIG).read_text()))
    assert saved.train.epochs == 1 and saved.model.arch == "tiny"
    state = TrainerState.load(last)
    assert (state.global_step, state.epoch, state.batch_in_epoch) == (2, 1, 0)
    assert state.best_metric is not None and state.log_file == str(out / LOG_FILE)

    # Resume with more epochs: the step count and the log continue.
    assert main(tiny_args(dataset, out, "--epochs", "2", "--resume", "auto")) == 0
    state = TrainerState.load(last)
    assert (state.global_step, state.epoch) == (4, 2)
    records = read_log(out)
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["kind"] == "start"] == [0, 2]
    assert [r["step"] for r in records if r["kind"] == "val"] == [2, 4]

    from blip_train.eval import main as eval_main

    eval_out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(last), "--baseline", str(out / "init"), "--out", str(eval_out),
                      "--cache_dir", str(tmp_path / "cache"), "--max_new_tokens", "8", "--report_samples", "4"]) == 0
    metrics = json.loads((eval_out / "metrics.json").read_text())
    assert set(metrics["captioning"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    for key in ("timeofday", "weather", "scene"):
        assert {"accuracy", "support", "majority_value", "majority_rate", "per_value"} <= set(metrics[key])
        assert metrics[key]["support"] == 6
    assert {"recall", "precision", "per_class"} <= set(metrics["objects"])
    assert metrics["frames"] == 6 and metrics["split"] == "val"  # the data root came from training_config.yaml
    captions = [json.loads(line) for line in (eval_out / "captions.jsonl").read_text().splitlines()]
    baseline = [json.loads(line) for line in (eval_out / "captions_baseline.jsonl").read_text().splitlines()]
    assert len(captions) == len(baseline) == 6
    report = eval_out / "report"
    for name in ("index.html", "captions.png", "loss.png"):
        assert (report / name).stat().st_size > 1000, name
    page = (report / "index.html").read_text()
    import html

    for row in captions[:4]:
        assert html.escape(row["reference"]) in page
    assert html.escape(captions[0]["caption"] or "(empty)") in page
    assert html.escape(baseline[0]["caption"] or "(empty)") in page


@pytest.mark.slow
def test_resume_mid_epoch_matches_an_uninterrupted_run(dataset, tmp_path):
    # A constant learning rate, so that stopping early with --max_steps does not change the schedule.
    common = ("--epochs", "2", "--batch_size", "4", "--schedule", "constant")
    straight = train(tiny_config(dataset, tmp_path / "a", *common), say=lambda _: None)
    # Stop after 3 of 8 steps (mid-epoch), then resume to the end.
    train(tiny_config(dataset, tmp_path / "b", *common, "--max_steps", "3"), say=lambda _: None)
    resumed = train(tiny_config(dataset, tmp_path / "b", *common, "--resume", "auto"), say=lambda _: None)
    assert straight.state.global_step == resumed.state.global_step == 8
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    losses = {r["step"]: r["loss"] for r in read_log(tmp_path / "a") if r["kind"] == "train"}
    losses_b = {r["step"]: r["loss"] for r in read_log(tmp_path / "b") if r["kind"] == "train"}
    assert losses_b == pytest.approx(losses)


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.fixture
def broken_copy(dataset, tmp_path) -> Path:
    root = tmp_path / "bdd"
    shutil.copytree(dataset, root)
    return root


def first_image(root: Path, split: str = "train") -> Path:
    frames = json.loads((root / "labels" / "det_20" / f"det_{split}.json").read_text())
    return root / "images" / "100k" / split / frames[0]["name"]


def run_main_expect_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_image_named(broken_copy, tmp_path, capsys):
    image = first_image(broken_copy)
    image.unlink()
    err = run_main_expect_error(capsys, tiny_args(broken_copy, tmp_path / "run", "--epochs", "1"))
    assert str(image) in err and "not found" in err


def test_unreadable_image_named(broken_copy, tmp_path, capsys):
    image = first_image(broken_copy)
    image.write_bytes(b"\xff\xd8 this is no jpeg")
    err = run_main_expect_error(capsys, tiny_args(broken_copy, tmp_path / "run", "--epochs", "1"))
    assert str(image) in err and "cannot decode" in err


def test_unreadable_images_skipped_up_to_the_threshold(broken_copy, tmp_path):
    image = first_image(broken_copy)
    image.write_bytes(b"garbage")
    split = load_caption_split(broken_copy, "train", (32, 32), cache_dir=tmp_path / "cache",
                               max_bad_image_fraction=0.1)
    assert len(split) == 15 and split.skipped == [(str(image), f"{image}: cannot decode image (corrupt, "
                                                                "truncated or not an image)")]
    assert image.name not in {frame.name for frame in split.frames}
    with pytest.raises(ValueError, match="more than --max_bad_image_fraction"):
        first_image(broken_copy, "val").write_bytes(b"garbage")
        load_caption_split(broken_copy, "val", (32, 32), cache_dir=tmp_path / "cache", max_bad_image_fraction=0.1)


def test_skipped_images_are_reported_at_the_end_of_the_run(broken_copy, tmp_path, capsys):
    image = first_image(broken_copy)
    image.write_bytes(b"garbage")
    out = tmp_path / "run"
    assert main(tiny_args(broken_copy, out, "--max_steps", "1", "--max_bad_image_fraction", "0.1")) == 0
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    at_load = next(i for i, line in enumerate(lines) if "1 unreadable images skipped" in line)
    at_end = next(i for i, line in enumerate(lines) if "unreadable images skipped: train 1 of 16;" in line)
    assert at_end > at_load
    rows = (out / "skipped_images.tsv").read_text().splitlines()
    assert rows[0] == "split\timage\treason" and rows[1].startswith(f"train\t{image}\t") and len(rows) == 2


def test_empty_label_file_named(broken_copy, tmp_path, capsys):
    labels = broken_copy / "labels" / "det_20" / "det_train.json"
    labels.write_text("")
    err = run_main_expect_error(capsys, tiny_args(broken_copy, tmp_path / "run"))
    assert str(labels) in err and "empty" in err


def test_missing_data_root_and_checkpoint(tmp_path, capsys):
    err = run_main_expect_error(capsys, tiny_args(tmp_path / "nowhere", tmp_path / "run"))
    assert str(tmp_path / "nowhere") in err
    err = run_main_expect_error(capsys, ["--arch", "tiny", "--out_dir", str(tmp_path / "run")])
    assert "--data_root" in err
    err = run_main_expect_error(capsys, tiny_args(tmp_path, tmp_path / "run", "--resume", str(tmp_path / "nope")))
    assert "--resume" in err and str(tmp_path / "nope") in err


def test_cache_is_reused_and_keyed_by_size(dataset, tmp_path):
    cache = tmp_path / "cache"
    a = load_caption_split(dataset, "val", (32, 32), cache_dir=cache)
    b = load_caption_split(dataset, "val", (32, 32), cache_dir=cache)
    c = load_caption_split(dataset, "val", (48, 48), cache_dir=cache)
    assert a.images.cache_file == b.images.cache_file != c.images.cache_file
    assert len(list(cache.glob("*.npy"))) == 2
    assert a.images[0].shape == (32, 32, 3) and c.images[0].shape == (48, 48, 3)
    lazy = load_caption_split(dataset, "val", (32, 32), cache_images=False)
    assert (lazy.images[0] == a.images[0]).all()


def test_tiny_arch_is_the_modeling_one():
    from blip_train.config import ARCHITECTURES

    assert ARCHITECTURES["tiny"] == TINY


def test_grad_accum_and_bf16_autocast(dataset, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(dataset, out, "--epochs", "1", "--batch_size", "4", "--grad_accum", "3",
                               "--precision", "bf16"), say=lambda _: None)
    assert result.state.global_step == 2  # 4 batches, 3 per optimizer step: ceil(4 / 3)
    start = next(r for r in read_log(out) if r["kind"] == "start")
    assert start["global_batch"] == 12 and start["total_steps"] == 2


@pytest.mark.slow
def test_torchrun_trains_with_ddp_on_cpu(dataset, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "blip_train.train", *tiny_args(dataset, out, "--epochs", "1", "--batch_size", "4")]
    done = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    start = next(r for r in read_log(out) if r["kind"] == "start")
    assert start["processes"] == 2 and start["total_steps"] == 2  # 16 frames / (4 per batch x 2 processes)
    assert TrainerState.load(out / "checkpoints" / "last").global_step == 2
    assert (out / "checkpoints" / "last" / "training_state" / "rng_state_1.pt").is_file()
    assert done.stdout.count("done:") == 1  # one summary, from rank 0
