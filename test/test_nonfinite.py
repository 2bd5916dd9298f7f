"""--nonfinite_loss: a NaN loss stops the run naming the step (checkpoints/last untouched) or skips the update."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from blip_train.checkpoint import TrainerState
from blip_train.config import TrainingConfig
from blip_train.dataclass_args import ConfigError, parse_config
from blip_train.train import NonFiniteLossError, main, train
from test.nonfinite_inject import install
from test.training_helpers import read_log, tiny_args, tiny_config


@pytest.fixture
def nan_calls():
    """nan_calls("3") poisons the 3rd training forward pass of this process; restored afterwards."""
    from transformers import BlipForConditionalGeneration

    original = BlipForConditionalGeneration.forward
    yield install
    BlipForConditionalGeneration.forward = original


def weights(directory):
    return load_file(directory / "model.safetensors")


def test_flag_is_validated():
    with pytest.raises(ConfigError, match="--nonfinite_loss must be one of stop, skip"):
        parse_config(TrainingConfig, ["--nonfinite_loss", "ignore"], "t", "")
    with pytest.raises(ConfigError, match="--max_nonfinite_skips"):
        parse_config(TrainingConfig, ["--max_nonfinite_skips", "0"], "t", "")


def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(dataset, tmp_path, nan_calls, capsys):
    out = tmp_path / "run"
    nan_calls("3")  # 4 batches of 4 per epoch, checkpoint every 2 steps: step 3 breaks
    code = main(tiny_args(dataset, out, "--epochs", "2", "--batch_size", "4", "--eval_every", "2"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: non-finite loss at step 3 (epoch 1, batch 3 of 4)" in err and "Traceback" not in err
    last = out / "checkpoints" / "last"
    assert f"{last} (step 2)" in err and "--resume auto" in err
    assert TrainerState.load(last).global_step == 2
    assert all(torch.isfinite(t).all() for t in weights(last).values())
    assert not list((out / "checkpoints").glob(".*"))
    assert max(r["step"] for r in read_log(out)) == 2


def test_skip_leaves_the_weights_alone_and_counts(dataset, tmp_path, nan_calls):
    # Accumulation: the 2nd of the 2 batches of step 1 is corrupt, so the whole step is skipped.
    nan_calls("2")
    args = ("--epochs", "1", "--batch_size", "4", "--grad_accum", "2", "--nonfinite_loss", "skip")
    one = train(tiny_config(dataset, tmp_path / "one", *args, "--max_steps", "1"), say=lambda _: None)
    assert one.state.skipped_steps == 1
    init, after = weights(tmp_path / "one" / "init"), weights(one.last)
    assert all(torch.equal(init[name], after[name]) for name in init)  # no update at all
    optimizer = torch.load(one.last / "training_state" / "optimizer.pt", weights_only=True)
    assert optimizer["state"] == {}  # nor any Adam moment

    nan_calls("2")  # counts restart: the same batch is corrupt again
    messages = []
    result = train(tiny_config(dataset, tmp_path / "two", *args), say=messages.append)
    assert (result.state.global_step, result.state.skipped_steps, result.state.consecutive_skips) == (2, 1, 0)
    log = read_log(tmp_path / "two")
    skips = [r for r in log if r["kind"] == "skip"]
    assert [(r["step"], r["reason"], r["loss"]) for r in skips] == [(1, "loss", "nan")]
    train_records = {r["step"]: r for r in log if r["kind"] == "train"}
    assert train_records[1]["loss"] is None and train_records[1]["skipped_steps"] == 1
    assert math.isfinite(train_records[2]["loss"])
    final = weights(result.last)
    assert all(torch.isfinite(t).all() for t in final.values())
    assert any(not torch.equal(init[name], final[name]) for name in init)  # step 2 did train
    assert any("1 of 2 optimizer steps were skipped" in m for m in messages)
    assert TrainerState.load(result.last).skipped_steps == 1


def test_too_many_consecutive_skips_stop(dataset, tmp_path, nan_calls):
    nan_calls("2-")  # a model that went bad for good
    config = tiny_config(dataset, tmp_path / "run", "--epochs", "2", "--batch_size", "4", "--nonfinite_loss", "skip",
                         "--max_nonfinite_skips", "2")
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive steps .* \(the last at step 4 \(epoch 1, batch 4 "
                                                 r"of 4\)\), more than --max_nonfinite_skips 2"):
        train(config, say=lambda _: None)
