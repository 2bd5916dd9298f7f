"""The bundled demo: its recipe file, its pass bar, and a seconds-long run of its whole code path."""

from __future__ import annotations

import json

import pytest
import yaml

from blip_train.demo import DEMO_RECIPE, check_pass_bar, ensure_dataset, main, read_drive_captions
from test.support import REPO


def test_committed_demo_recipe_is_the_one_the_demo_runs():
    assert yaml.safe_load((REPO / "config" / "train" / "demo.yaml").read_text()) == DEMO_RECIPE


def test_the_demo_recipe_trains_on_synthetic_data_made_as_the_readme_shows(tmp_path):
    """README: `blip_train.datasets.synthetic --splits ...`, then blip-train with config/train/demo.yaml on it."""
    import re

    from blip_train import train
    from blip_train.datasets import synthetic

    command = next(line for line in (REPO / "README.md").read_text().splitlines()
                   if "-m blip_train.datasets.synthetic" in line and "--splits" in line)
    splits = re.search(r"--splits (\S+)", command).group(1)
    assert synthetic.main(["--out", str(tmp_path / "data"), "--frames", "6", "--splits", splits]) == 0
    assert train.main(["--config", str(REPO / "config" / "train" / "demo.yaml"), "--data_root", str(tmp_path / "data"),
                       "--out_dir", str(tmp_path / "run"), "--epochs", "1", "--eval_batch_size", "6"]) == 0
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").is_file()


def scores(tod: float, tod_major: float, weather: float, weather_major: float) -> dict:
    return {"timeofday": {"accuracy": tod, "majority_rate": tod_major},
            "weather": {"accuracy": weather, "majority_rate": weather_major}}


def test_pass_bar():
    assert check_pass_bar(scores(0.95, 0.34, 0.8, 0.17)) == []
    assert len(check_pass_bar(scores(0.85, 0.34, 0.8, 0.17))) == 1
    assert "majority" in check_pass_bar(scores(0.95, 0.6, 0.8, 0.17))[0]  # not 40 points above always-"daytime"
    assert len(check_pass_bar(scores(0.95, 0.34, 0.5, 0.17))) == 1


@pytest.mark.slow
def test_quick_demo_runs_the_whole_pipeline(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "time-of-day accuracy" in out and "report:" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["frames"] == 12 and metrics["split"] == "val"
    assert (tmp_path / "eval" / "report" / "index.html").is_file()
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "init" / "model.safetensors").is_file()
    # It ends by captioning a 2 s synthetic drive at 1 Hz with the trained model, into an MCAP Foxglove can open.
    records = read_drive_captions(tmp_path / "drive_captioned")
    assert len(records) == 2 and all(r["caption"] and r["camera"] == "front" for r in records)
    assert all(r["lidar"] is not None and r["radar"] is not None for r in records)
    (mcap_file,) = (tmp_path / "drive_captioned").glob("*.mcap")
    assert f"drive:   {mcap_file}" in out and "weather 'rainy' stated in" in out
    # A second run reuses the drawn dataset.
    said = []
    ensure_dataset(tmp_path / "data", {"train": 24, "minival": 6, "val": 12}, 0, said.append)
    assert said == [f"dataset: reusing {tmp_path / 'data'}"]
