"""Caption sources (labels / BDD-X / both), Cityscapes as training set, --only, the attribute-balanced sampler."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from blip_train.attribute_filter import parse_only
from blip_train.balanced_sampling import balance_weights, sampling_weights, training_sampler
from blip_train.config import DataConfig, TrainingConfig
from blip_train.data import DataError, EpochSampler, WeightedEpochSampler
from blip_train.dataclass_args import ConfigError, config_from_dict, parse_config
from blip_train.datasets.records import FrameRecord
from blip_train.splits import load_splits
from test.training_helpers import tiny_training_flags

SIZE = (32, 32)
HEADER = ["Input.Video"] + [f"Answer.{k}{part}" for k in range(1, 16)
                            for part in ("start", "end", "action", "justification")]
URL = "https://s3-us-west-2.amazonaws.com/sq8geewpqu/samples-1k/{}.mov"


@pytest.fixture(scope="module")
def roots(synthetic_bdd, synthetic_cityscapes, tmp_path_factory) -> dict[str, Path]:
    return {"bdd": synthetic_bdd(24, 6, seed=3), "cityscapes": synthetic_cityscapes(6, seed=3),
            "cache": tmp_path_factory.mktemp("mixing_cache")}


def frame_names(root: Path, split: str) -> list[str]:
    return [frame["name"] for frame in json.loads((root / "labels" / "det_20" / f"det_{split}.json").read_text())]


def write_bddx(path: Path, rows: list[tuple[str, list[tuple]]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for video, segments in rows:
            cells = [URL.format(video)] + [str(v) for segment in segments for v in segment]
            writer.writerow(cells + [""] * (len(HEADER) - len(cells)))
    return path


def data_config(roots, **values) -> DataConfig:
    return DataConfig(**{"data_root": str(roots["bdd"]), "cache_dir": str(roots["cache"]), "num_workers": 0,
                         "max_val_frames": None, **values})


@pytest.fixture(scope="module")
def bddx_csv(roots) -> Path:
    """Sentences for 4 training stills (one with two segments covering 10 s) and one video not in the split."""
    names = [name.removesuffix(".jpg") for name in frame_names(roots["bdd"], "train")[:4]]
    rows = [(names[0], [(0, 10, "The car slows down", "because the light is red."),
                        (10, 20, "The car stops", "because traffic ahead is stopped.")]),
            (names[1], [(5, 15, "The car drives forward", "as traffic flows freely.")]),
            (names[2], [(8, 12, "The car turns right", "to follow the road.")]),
            (names[3], [(0, 30, "The car keeps its lane", "since the road is clear.")]),
            ("0000abcd-0000ef01", [(0, 40, "The car waits", "because the gate is closed.")])]
    return write_bddx(roots["bdd"] / "BDD-X-Annotations_v1.csv", rows)


# --- --only -----------------------------------------------------------------------------------------------------------


def test_only_parses_repeats_and_names_mistakes():
    assert parse_only("weather=snowy,foggy; timeofday=night") == {"weather": {"snowy", "foggy"},
                                                                   "timeofday": {"night"}}
    assert parse_only("weather=snowy;weather=foggy") == {"weather": {"snowy", "foggy"}}
    for text, message in (("time=night", "unknown attribute 'time'"), ("weather=sunny", "unknown weather value"),
                          ("weather", "ATTRIBUTE=VALUE"), ("scene=", "no value")):
        with pytest.raises(ValueError, match=message):
            parse_only(text)
    config = parse_config(TrainingConfig, ["--only", "weather=snowy,foggy", "--only", "scene=city street"], "t", "")
    assert parse_only(config.data.only) == {"weather": {"snowy", "foggy"}, "scene": {"city street"}}
    recipe = config_from_dict(TrainingConfig, {"data": {"only": ["weather=rainy", "timeofday=night"]}})
    assert recipe.data.only == "weather=rainy; timeofday=night"
    with pytest.raises(ConfigError, match="--only: unknown weather value"):
        parse_config(TrainingConfig, ["--only", "weather=sunny", "--balance_cap", "0.5"], "t", "")


def test_only_filters_the_training_split_and_says_when_nothing_matches(roots):
    train, val, _ = load_splits(data_config(roots, only="weather=snowy,foggy; timeofday=night"), SIZE)
    assert train.frames and all(f.weather in ("snowy", "foggy") and f.timeofday == "night" for f in train.frames)
    assert len(train.images) == len(train.captions) == len(train.frames)
    assert len(val) == 6  # validation is never filtered
    with pytest.raises(DataError, match=r"det_train\.json: no frame matches --only scene=tunnel \(values there: "
                                        r"scene: .*city street"):
        load_splits(data_config(roots, only="scene=tunnel"), SIZE)
    cityscapes = data_config(roots, dataset="cityscapes", cityscapes_root=str(roots["cityscapes"]),
                             only="weather=snowy")
    with pytest.raises(DataError, match="gtFine/train: no frame matches --only weather=snowy .*undefined 6"):
        load_splits(cityscapes, SIZE)


# --- sources --------------------------------------------------------------------------------------------------------


def test_cityscapes_trains_and_bdd100k_validates(roots):
    data = data_config(roots, dataset="cityscapes", cityscapes_root=str(roots["cityscapes"]))
    train, val, _ = load_splits(data, SIZE)
    assert len(train) == 6 and train.frames[0].name.endswith("_leftImg8bit.png")
    assert {(f.weather, f.timeofday, f.scene) for f in train.frames} == {("undefined", "undefined", "city street")}
    assert train.images[0].shape == (32, 32, 3)
    assert str(val.label_file).endswith("det_val.json")
    assert not any(word in " ".join(train.captions) for word in ("night", "daytime", "rain", "snow"))


def test_missing_and_malformed_inputs_name_the_file(roots, tmp_path):
    from blip_train.train import setup

    with pytest.raises(ConfigError, match="--bddx_csv is required with --caption_source both"):
        setup(TrainingConfig(data=data_config(roots, caption_source="both")))
    with pytest.raises(ConfigError, match="--cityscapes_root is required"):
        setup(TrainingConfig(data=data_config(roots, dataset="cityscapes")))
    with pytest.raises(ConfigError, match="--caption_source bddx pairs BDD-X sentences with BDD100K stills"):
        DataConfig(dataset="cityscapes", caption_source="bddx")
    with pytest.raises(ConfigError, match=r"--bddx_ratio must be in \(0, 1\)"):
        DataConfig(bddx_ratio=1.0)
    with pytest.raises(DataError, match="nowhere.csv: cannot read BDD-X annotations"):
        load_splits(data_config(roots, caption_source="bddx", bddx_csv=str(tmp_path / "nowhere.csv")), SIZE)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="other.csv: not a BDD-X annotation file"):
        load_splits(data_config(roots, caption_source="bddx", bddx_csv=str(tmp_path / "other.csv")), SIZE)
    unrelated = write_bddx(tmp_path / "unrelated.csv", [("0000abcd-0000ef01", [(0, 40, "The car waits", "")])])
    with pytest.raises(DataError, match="unrelated.csv: none of its 1 videos has a segment covering 10 s"):
        load_splits(data_config(roots, caption_source="bddx", bddx_csv=str(unrelated)), SIZE)
    with pytest.raises(DataError, match="nowhere: Cityscapes root not found"):
        load_splits(data_config(roots, dataset="cityscapes", cityscapes_root=str(tmp_path / "nowhere")), SIZE)
    with pytest.raises(DataError, match="no_videos: --bddx_videos folder not found"):
        load_splits(data_config(roots, caption_source="bddx", bddx_csv=str(unrelated),
                                bddx_videos=str(tmp_path / "no_videos")), SIZE)


def test_bddx_sentences_pair_with_stills(roots, bddx_csv):
    train, _, _ = load_splits(data_config(roots, caption_source="bddx", bddx_csv=str(bddx_csv)), SIZE)
    names = frame_names(roots["bdd"], "train")
    assert [f.name for f in train.frames] == [names[0], names[0], names[1], names[2], names[3]]
    assert train.captions[:2] == ["The car slows down because the light is red.",
                                  "The car stops because traffic ahead is stopped."]
    assert train.sources == ["bddx"] * 5
    labels, _, _ = load_splits(data_config(roots), SIZE)
    assert np.array_equal(train.images[2], labels.images[1])  # the still's cached image, shared
    assert train.frames[2] == labels.frames[1]  # the still's weather / time / scene labels
    assert sampling_weights(train, data_config(roots, caption_source="bddx", bddx_csv=str(bddx_csv))) is None


def test_both_sources_mix_at_the_ratio(roots, bddx_csv):
    data = data_config(roots, caption_source="both", bddx_csv=str(bddx_csv), bddx_ratio=0.3)
    train, _, _ = load_splits(data, SIZE)
    assert Counter(train.sources) == {"labels": 24, "bddx": 5} and len(train.images) == 29
    assert "24 label captions, 5 BDD-X sentences" in train.summary()
    weights = sampling_weights(train, data)
    assert sum(w for w, s in zip(weights, train.sources, strict=True) if s == "bddx") == pytest.approx(0.3)
    sampler, lines = training_sampler(train, data, seed=0)
    assert isinstance(sampler, WeightedEpochSampler) and "BDD-X sentences 30% of draws" in lines[0]
    draws = []
    for epoch in range(300):
        sampler.set_epoch(epoch)
        draws += list(sampler)
    share = sum(train.sources[i] == "bddx" for i in draws) / len(draws)
    assert share == pytest.approx(0.3, abs=0.02)


def test_video_frames_at_segment_midpoints(roots, tmp_path):
    train_names = [n.removesuffix(".jpg") for n in frame_names(roots["bdd"], "train")]
    val_name = frame_names(roots["bdd"], "val")[0].removesuffix(".jpg")
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in (train_names[5], val_name):
        writer = cv2.VideoWriter(str(videos / f"{name}.mov"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        for i in range(50):  # 5 s
            writer.write(np.full((48, 64, 3), i * 5, np.uint8))
        writer.release()
    csv_path = write_bddx(tmp_path / "bddx.csv", [
        (train_names[5], [(0, 2, "The car starts", "because the light turns green."),
                          (2, 4, "The car speeds up", "as the road is clear."),
                          (30, 40, "The car stops", "at the light.")]),
        (val_name, [(0, 10, "The car waits", "for the pedestrian.")]),
    ])
    data = data_config(roots, caption_source="bddx", bddx_csv=str(csv_path), bddx_videos=str(videos),
                       cache_dir=str(tmp_path / "cache"))
    train, _, notes = load_splits(data, SIZE)
    # Two frames decoded (1 s and 3 s); the 35 s one is past the end; the validation video is left out.
    assert [f.name for f in train.frames] == [f"{train_names[5]}_01000ms.jpg", f"{train_names[5]}_03000ms.jpg"]
    still = next(f for f in load_splits(data_config(roots), SIZE)[0].frames if f.name == f"{train_names[5]}.jpg")
    assert train.frames[0].attributes == still.attributes and not train.frames[0].has_object_labels
    assert train.images[1].mean() > train.images[0].mean() + 10
    assert any("no frame at 35 s" in reason for _, reason in train.skipped)
    assert any("in the validation split (1)" in line for line in notes)
    assert (tmp_path / "cache" / "bddx_frames" / f"{train_names[5]}_01000ms.jpg").is_file()


# --- balancing ------------------------------------------------------------------------------------------------------


def records(spec: dict[tuple[str, str, str], int]) -> list[FrameRecord]:
    return [FrameRecord(f"{i}-{n}.jpg", *combo) for i, (combo, count) in enumerate(spec.items()) for n in range(count)]


def test_balance_weights_are_inverse_frequency_with_a_cap():
    frames = records({("clear", "daytime", "city street"): 90, ("snowy", "night", "highway"): 9,
                      ("foggy", "dawn/dusk", "residential"): 1})
    assert sorted(set(balance_weights(frames, cap=100.0))) == [1.0, 10.0, 90.0]
    assert sorted(set(balance_weights(frames, cap=5.0))) == [1.0, 5.0]
    data = DataConfig(balance_attributes=True, balance_cap=20.0)
    split = type("Split", (), {"frames": frames, "sources": [], "__len__": lambda self: len(frames)})()
    weights = sampling_weights(split, data)
    share = Counter()
    for frame, weight in zip(frames, weights, strict=True):
        share[frame.weather] += weight
    # 90 x 1 : 9 x 10 : 1 x 20 -> the rare combinations go from 10 % and 1 % of draws to 45 % and 10 %.
    assert (share["clear"], share["snowy"], share["foggy"]) == pytest.approx((0.45, 0.45, 0.10))
    assert sampling_weights(split, DataConfig()) is None


def test_sampler_is_deterministic_per_seed_and_epoch_and_shards_like_epoch_sampler():
    from accelerate.data_loader import BatchSamplerShard

    weights = [1.0] * 90 + [10.0] * 10
    sampler = WeightedEpochSampler(weights, seed=7)
    first = list(sampler)
    assert len(first) == len(sampler) == 100 and first == list(WeightedEpochSampler(weights, seed=7))
    sampler.set_epoch(1)
    assert list(sampler) != first and list(WeightedEpochSampler(weights, seed=8)) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    # Accelerate gives process k the batches k, k+N, ... of one batch sampler: every process draws the same list.
    for cls, args in ((WeightedEpochSampler, (weights, 7)), (EpochSampler, (100, 7))):
        whole = list(torch.utils.data.BatchSampler(cls(*args), 8, drop_last=False))
        shards = [list(BatchSamplerShard(torch.utils.data.BatchSampler(cls(*args), 8, drop_last=False), 2, rank))
                  for rank in range(2)]
        assert shards[0][:6] == whole[0:12:2] and shards[1][:6] == whole[1:12:2]
    with pytest.raises(ValueError, match="sampling weights"):
        WeightedEpochSampler([0.0, 0.0], seed=0)


def test_blip_train_with_both_sources_and_balancing(roots, bddx_csv, tmp_path):
    from blip_train.train import setup

    recipe = tmp_path / "mix.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"caption_source": "both", "bddx_ratio": 0.25,
                                               "balance_attributes": True, "balance_cap": 4}}))
    config = parse_config(TrainingConfig, [
        "--config", str(recipe), "--data_root", str(roots["bdd"]), "--bddx_csv", str(bddx_csv),
        "--out_dir", str(tmp_path / "run"), *tiny_training_flags(roots["cache"], "--max_steps", "2",
                                                                 "--max_val_frames", "2", "--max_new_tokens", "4")],
        "t", "")
    lines = []
    run = setup(config, lines.append)
    assert isinstance(run.sampler, WeightedEpochSampler) and len(run.train_split) == 29
    assert any("BDD-X sentences 25% of draws" in line for line in lines)
    assert any("combinations balanced (cap 4)" in line for line in lines)
    batch = next(iter(run.train_loader))
    assert batch["pixel_values"].shape == (8, 3, 32, 32)


def test_blip_train_reports_filter_mistakes_without_a_traceback(roots, tmp_path, capsys):
    from blip_train.train import main

    common = ["--data_root", str(roots["bdd"]), "--out_dir", str(tmp_path / "run"),
              *tiny_training_flags(roots["cache"])]
    assert main([*common, "--only", "weather=sunny"]) == 2
    assert "--only: unknown weather value(s) 'sunny'" in capsys.readouterr().err
    assert main([*common, "--only", "scene=tunnel"]) == 2
    assert "det_train.json: no frame matches --only scene=tunnel" in capsys.readouterr().err
