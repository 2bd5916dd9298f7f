"""blip-eval pieces: caption metrics, caption generation with a prompt, and its user errors."""

from __future__ import annotations

import pytest
import torch

from blip_caption_ros.backends.decoding import tidy_caption
from blip_train import metrics as metrics_module
from blip_train.captions import caption_vocabulary
from blip_train.data import ImageSet
from blip_train.eval import generate_captions, main
from blip_train.metrics import CAPTION_METRICS, caption_metrics, simple_tokenize
from blip_train.modeling import TINY, build_blip

REFS = [["A city street at night. There are two cars ahead.", "There are two cars ahead. The scene is a city street "
         "at nighttime."], ["A highway during the day in the rain. No other road users are visible."],
        ["A residential street in the snow at twilight. I can see a pedestrian on the left."]]


def test_tidy_caption():
    assert tidy_caption("a city street at night . there are twenty - one cars , all ahead ; i can see a bus .") == \
        "A city street at night. There are twenty-one cars, all ahead; I can see a bus."


def test_simple_tokenizer_matches_ptb_words():
    assert simple_tokenize("Twenty-one cars, all ahead; I can't see.") == "twenty-one cars all ahead i can't see"


@pytest.mark.slow
def test_caption_metrics_rank_good_above_bad():
    good = caption_metrics(REFS, [r[0] for r in REFS])
    bad = caption_metrics(REFS, ["a picture of a cat", "", "snow snow snow"])
    assert set(good["scores"]) == set(CAPTION_METRICS)
    assert good["tokenizer"] == "ptb"
    assert any("SPICE" in note for note in good["notes"])
    for name in CAPTION_METRICS:
        assert good["scores"][name] > bad["scores"][name], name
    assert good["scores"]["BLEU-4"] == pytest.approx(1.0)


def test_caption_metrics_without_java(monkeypatch):
    monkeypatch.setattr(metrics_module, "java_available", lambda: False)
    result = caption_metrics(REFS, [r[0] for r in REFS])
    assert result["tokenizer"] == "python" and result["scores"]["METEOR"] is None
    assert result["scores"]["BLEU-1"] == pytest.approx(1.0)
    assert any("java not found" in note for note in result["notes"])


def test_generate_captions_batches_and_strips_the_prompt(tmp_path):
    model, processor = build_blip(caption_vocabulary() + ["picture"], tmp_path / "m", TINY)
    rng = torch.Generator().manual_seed(0)
    arrays = [torch.randint(0, 255, (32, 32, 3), dtype=torch.uint8, generator=rng).numpy() for _ in range(5)]

    class InMemory(ImageSet):
        def __getitem__(self, index):
            return arrays[index]

    source = InMemory([tmp_path / f"{i}.jpg" for i in range(5)], (32, 32))
    plain = generate_captions(model, processor, source, prompt="", max_new_tokens=6, batch_size=2)
    prompted = generate_captions(model, processor, source, prompt="a picture of ", max_new_tokens=6, batch_size=2)
    assert len(plain) == len(prompted) == 5
    assert all(isinstance(c, str) for c in plain + prompted)
    assert not any(c.lower().startswith("a picture of") for c in prompted)
    # Same ids with batch 5 as with batches of 2: batching changes nothing.
    assert generate_captions(model, processor, source, prompt="", max_new_tokens=6, batch_size=5) == plain
    assert not model.training


def test_eval_errors_are_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing"), "--data_root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --checkpoint") and str(tmp_path / "missing") in err and "Traceback" not in err
    assert main(["--data_root", str(tmp_path)]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err
    build_blip(caption_vocabulary(), tmp_path / "m", TINY)
    assert main(["--checkpoint", str(tmp_path / "m")]) == 2
    assert "--data_root is required" in capsys.readouterr().err
