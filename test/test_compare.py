"""blip-compare end to end: the same tiny BLIP trained on generated BDD100K and Cityscapes, scored on BDD100K val."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from blip_train.compare import main
from blip_train.config import TrainingConfig
from blip_train.dataclass_args import config_from_dict
from test.support import REPO
from test.training_helpers import tiny_training_flags


@pytest.fixture(scope="module")
def roots(synthetic_bdd, synthetic_cityscapes) -> tuple[Path, Path]:
    # 18 validation frames: every weather x time of day once
    return synthetic_bdd(16, 18, seed=5), synthetic_cityscapes(12, seed=5)


def tiny_overrides(cache: Path) -> list[str]:
    return tiny_training_flags(cache, "--epochs", "2", "--max_steps", "3", "--precision", "no", "--max_val_frames", "6",
                               "--num_beams", "1", "--eval_batch_size", "18", "--eval_every", "2")


def test_recipes_differ_only_in_the_dataset():
    bdd, cs = (config_from_dict(TrainingConfig, yaml.safe_load((REPO / "config" / "train" / name).read_text()))
               for name in ("bdd100k_compare.yaml", "cityscapes_compare.yaml"))
    assert (bdd.data.dataset, cs.data.dataset) == ("bdd100k", "cityscapes")
    a, b = bdd.to_dict(), cs.to_dict()
    for d in (a, b):
        del d["data"]["dataset"], d["train"]["out_dir"]
    assert a == b


@pytest.mark.slow
def test_compare_end_to_end(roots, tmp_path, capsys):
    bdd, cs = roots
    out = tmp_path / "compare"
    code = main(["--data_root", str(bdd), "--cityscapes_root", str(cs), "--out", str(out),
                 *tiny_overrides(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    table = (out / "comparison.md").read_text()
    data = json.loads((out / "comparison.json").read_text())
    assert (out / "loss.png").stat().st_size > 1000 and data["loss_plot"] == str(out / "loss.png")
    assert data["eval"]["frames"] == 18
    rows = {row["metric"]: row for row in data["rows"]}
    assert rows["training frames"]["bdd100k"] == 16 and rows["training frames"]["cityscapes"] == 12
    assert rows["optimizer steps"]["bdd100k"] == rows["optimizer steps"]["cityscapes"] == 3
    for name in ("bdd100k", "cityscapes"):
        run = data["runs"][name]
        for metric in ("final train loss", "final val loss (BDD100K val)", "CIDEr", "BLEU-4"):
            assert isinstance(rows[metric][name], float)
        assert Path(run["metrics_file"]).is_file() and (out / name / "eval" / "captions.jsonl").is_file()
        assert Path(run["checkpoint"]).parent == out / name / "checkpoints"
    # Cityscapes never states weather or time of day in a caption; BDD100K does; both state the scene.
    assert data["runs"]["cityscapes"]["attributes"]["weather"]["in_training_captions"] is False
    assert data["runs"]["cityscapes"]["attributes"]["timeofday"]["in_training_captions"] is False
    assert data["runs"]["cityscapes"]["attributes"]["scene"]["in_training_captions"] is True
    assert all(data["runs"]["bdd100k"]["attributes"][key]["in_training_captions"]
               for key in ("weather", "timeofday", "scene"))
    for metric in ("weather accuracy", "time of day accuracy", "weather = snowy accuracy (n=3)",
                   "time of day = night accuracy (n=6)"):
        assert rows[metric]["notes"] == {"cityscapes": "not in training captions"}
    assert rows["scene accuracy"]["notes"] == {}
    for value in ("night", "rainy", "snowy", "foggy"):
        assert value in data["runs"]["bdd100k"]["attributes"]["weather" if value != "night" else "timeofday"][
            "per_value"]
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| metric | trained on BDD100K | trained on Cityscapes | majority class |" in table
    assert "(not in training captions)" in lines["weather accuracy"].split(" | ")[2]
    assert "not in training captions" not in lines["weather accuracy"].split(" | ")[1]
    assert "![training and validation loss](loss.png)" in table
    assert "comparison.md" in capsys.readouterr().out


def test_recipes_that_differ_in_more_than_data_are_refused(roots, tmp_path, capsys):
    bdd, cs = roots
    recipe = yaml.safe_load((REPO / "config" / "train" / "cityscapes_compare.yaml").read_text())
    recipe["optim"]["lr"] = 3e-5
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(recipe))
    args = ["--data_root", str(bdd), "--cityscapes_root", str(cs), "--out", str(tmp_path / "c")]
    assert main([*args, "--cityscapes_recipe", str(other)]) == 2
    assert "the recipes differ in optim.lr: 1e-05" in capsys.readouterr().err
    assert main([*args, "--out_dir", "x", "--bdd100k_recipe", str(other)]) == 2
    err = capsys.readouterr().err
    assert "--out_dir: blip-compare sets it for each run" in err
    assert main([*args, "--bdd100k_recipe", str(other)]) == 2
    assert "needs dataset: bdd100k" in capsys.readouterr().err
