"""blip-export: ONNX graphs checked against PyTorch, a self-describing directory, typed errors, nothing half-written.

Tiny random BLIP for most checks; a mid-size config with BLIP-base's real shapes (384 px, 577 image tokens, hidden 768,
12 heads, 2+2 layers) for parity at full width; the full-size BLIP-base export is `slow` and opt-in
(BLIP_FULL_SIZE_TESTS=1; bench/caption_latency.py runs the same export and parity on every benchmark run).
"""

import json
import os
import shutil

import numpy as np
import pytest

from blip_caption_ros.backends import CaptionerConfig, ModelLoadError, load_captioner
from blip_caption_ros.backends.engine_manifest import (
    ONNX_FORMAT,
    ONNX_FORMAT_1,
    ONNX_MANIFEST,
    PROCESSOR_FILES,
    file_hashes,
    sha256_file,
)
from blip_train.export import ExportError, ExportOptions, ParityError, export, main, token_agreement
from blip_train.modeling import BLIP_BASE, BlipArchitecture, build_blip

WORDS = ("a", "picture", "of", "car", "cars", "road", "street", "city", "rain", "night", "truck", "sign")
MID_SIZE = BlipArchitecture(vision_layers=2, text_layers=2, vision_intermediate=1024, text_intermediate=1024,
                            max_position_embeddings=64)


def test_export_dir_describes_itself_and_records_parity(tiny_export, tiny_blip_dir):
    out = tiny_export
    manifest = json.loads((out / ONNX_MANIFEST).read_text())
    assert manifest["format"] == ONNX_FORMAT and manifest["exact"]
    expected_files = {"vision.onnx", "decoder.onnx", "vocab.txt", "tokenizer_config.json", "config.json"}
    assert expected_files <= set(manifest["files"])
    assert all(sha256_file(out / name) == digest for name, digest in manifest["files"].items())
    assert set(manifest["graphs"]) == {"vision", "decoder", "decoder_split"}  # graphs only
    assert {graph["file"] for graph in manifest["graphs"].values()} <= set(manifest["files"])
    assert {"vocab.txt", "tokenizer_config.json", "config.json"} <= set(manifest["processor_files"])
    assert set(manifest["processor_files"]) <= set(manifest["files"])
    assert manifest["shapes"]["cross_kv"][4] == manifest["model"]["image_tokens"]
    assert manifest["graphs"]["decoder"]["inputs"] == ["input_ids", "position_ids", "past_mask", "past_kv", "cross_kv"]
    assert manifest["graphs"]["decoder"]["dynamic_axes"]["past_kv"] == {"2": "batch", "4": "past_tokens"}
    tokens = manifest["tokens"]
    assert tokens["eos"] == tokens["sep"] == 3 and tokens["pad"] == 0 and tokens["bos"] == len(
        (tiny_blip_dir / "vocab.txt").read_text().split())  # [DEC] comes after the vocabulary
    assert manifest["opset"] == 18 and {"torch", "transformers", "onnxruntime"} <= set(manifest["versions"])
    outputs = manifest["parity"]["outputs"]
    assert all(v["max_abs_diff"] <= manifest["parity"]["atol"] for g in outputs.values() for v in g.values())
    assert outputs["vision"]["cross_kv"]["shape"][2] == 3  # checked at a batch size other than the traced one
    assert all(r["identical"] for r in manifest["parity"]["greedy_ids"].values())
    int8 = json.loads((out / "int8" / ONNX_MANIFEST).read_text())
    assert int8["variant"] == "int8-dynamic" and not int8["exact"]
    assert 0.0 <= int8["parity"]["greedy_ids"]["<none>"]["token_agreement"] <= 1.0
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


IMAGES = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(2)]


def _tampered(source, tmp_path, edit):
    """A copy of the export `source` whose manifest `edit(manifest, directory)` changed (files may change too)."""
    copy = tmp_path / f"copy_{source.name}"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("int8"))
    manifest = json.loads((copy / ONNX_MANIFEST).read_text())
    edit(manifest, copy)
    (copy / ONNX_MANIFEST).write_text(json.dumps(manifest))
    return copy


def _refusal(export_dir) -> str:
    with pytest.raises(ModelLoadError) as error:
        load_captioner(CaptionerConfig(model=str(export_dir), backend="onnxruntime"))
    assert "\n" not in str(error.value)
    return str(error.value)


def _unhash_split_decoder(replacement):
    def edit(manifest, directory):
        del manifest["files"]["decoder.split.onnx"]
        (directory / "decoder.split.onnx").write_bytes(replacement(directory))
    return edit


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("replacement", ["other graph", "decoder.onnx"])
def test_a_graph_the_manifest_does_not_hash_is_refused(tiny_export, tmp_path, variant, replacement):
    """The held-out check: decoder.split.onnx's entry removed from "files" and the graph swapped (for another valid
    graph that captions differently, or for decoder.onnx, whose inputs differ) must not load."""
    out = tiny_export if variant == "fp32" else tiny_export / "int8"
    other = tiny_export / ("int8" if variant == "fp32" else "") / "decoder.split.onnx"
    source = other if replacement == "other graph" else None
    copy = _tampered(out, tmp_path, _unhash_split_decoder(
        lambda d: source.read_bytes() if source else (d / "decoder.onnx").read_bytes()))
    message = _refusal(copy)
    assert "does not hash decoder.split.onnx" in message and "refusing unverified files" in message


def test_processor_files_must_be_listed_and_hashed(tiny_export, tmp_path):
    def unhash(manifest, directory):
        del manifest["files"]["vocab.txt"]
        (directory / "vocab.txt").write_text("[PAD]\n")

    def unlist(manifest, directory):
        del manifest["files"]["vocab.txt"]
        manifest["processor_files"].remove("vocab.txt")

    assert "does not hash vocab.txt" in _refusal(_tampered(tiny_export, tmp_path / "a", unhash))
    assert "does not list vocab.txt among its processor files" in _refusal(
        _tampered(tiny_export, tmp_path / "b", unlist))

    listed = json.loads((tiny_export / ONNX_MANIFEST).read_text())["processor_files"]
    absent = next(name for name in PROCESSOR_FILES if name not in listed)

    def smuggle(manifest, directory):  # a processor file the export never had: transformers would read it
        (directory / absent).write_text("{}")

    assert f"does not list {absent} among its processor files" in _refusal(
        _tampered(tiny_export, tmp_path / "c", smuggle))


def test_an_export_of_the_first_manifest_format_still_loads(tiny_export, tmp_path):
    """Exports written before processor files and shapes had sections of their own read as before."""
    def to_format_1(manifest, directory):
        manifest["format"] = ONNX_FORMAT_1
        manifest["graphs"]["cross_kv_shape"] = manifest.pop("shapes")["cross_kv"]
        del manifest["processor_files"]

    old = _tampered(tiny_export, tmp_path, to_format_1)
    config = dict(backend="onnxruntime", max_new_tokens=10, prompt="a picture of")
    captions = load_captioner(CaptionerConfig(model=str(old), **config)).caption(IMAGES)
    assert captions == load_captioner(CaptionerConfig(model=str(tiny_export), **config)).caption(IMAGES)

    def unhashed_format_1(manifest, directory):
        to_format_1(manifest, directory)
        del manifest["files"]["decoder.split.onnx"]
        manifest["files"] = file_hashes(directory, manifest["files"])

    assert "does not hash decoder.split.onnx" in _refusal(_tampered(tiny_export, tmp_path / "b", unhashed_format_1))


@pytest.mark.slow
def test_failed_check_is_typed_and_leaves_nothing(tmp_path, tiny_blip_dir):
    out = tmp_path / "onnx"
    with pytest.raises(ParityError, match=r"differs from PyTorch by .* > atol 1e-12"):
        export(ExportOptions(checkpoint=str(tiny_blip_dir), out=str(out), atol=1e-12, samples=1))
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_problems_are_export_errors(tmp_path, tiny_blip_dir):
    with pytest.raises(ExportError, match="is not a directory"):
        export(ExportOptions(checkpoint=str(tmp_path / "missing"), out=str(tmp_path / "out")))
    with pytest.raises(ExportError, match="cannot load checkpoint"):
        export(ExportOptions(checkpoint=str(tmp_path), out=str(tmp_path / "out")))
    checkpoint = tmp_path / "penalised"
    build_blip(WORDS, checkpoint)
    config = json.loads((checkpoint / "generation_config.json").read_text())
    (checkpoint / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    with pytest.raises(ExportError, match="repetition_penalty=1.3"):
        export(ExportOptions(checkpoint=str(checkpoint), out=str(tmp_path / "out")))


def test_cli_reports_one_line_errors(tmp_path, tiny_export, capsys):
    out = tiny_export
    assert main(["--checkpoint", str(tmp_path), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    # No TensorRT (or no GPU) here: refused up front, before any export work.
    assert main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "new"), "--tensorrt"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("blip-export: --tensorrt: ") and "\n" not in error
    assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x")])  # --checkpoint missing: argparse's usage error


def test_token_agreement():
    assert token_agreement([[1, 2, 3]], [[1, 2, 3]]) == 1.0
    assert token_agreement([[1, 2, 3, 4]], [[1, 9, 3]]) == 0.5


@pytest.mark.slow
def test_mid_size_export_gives_generate_ids(tmp_path):
    """BLIP-base widths and image size (577 tokens x 12 heads x 64), two layers each side."""
    checkpoint = tmp_path / "mid"
    build_blip(WORDS, checkpoint, arch=MID_SIZE)
    manifest = export(ExportOptions(checkpoint=str(checkpoint), out=str(tmp_path / "onnx"), samples=2,
                                    max_new_tokens=12))
    assert manifest == json.loads((tmp_path / "onnx" / ONNX_MANIFEST).read_text())  # what export returns is on disk
    assert manifest["model"]["image_tokens"] == 577 and manifest["model"]["text_heads"] == 12
    assert all(r["identical"] for r in manifest["parity"]["greedy_ids"].values())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("BLIP_FULL_SIZE_TESTS") != "1", reason="full-size export takes ~3 min on 2 cores; "
                    "set BLIP_FULL_SIZE_TESTS=1")
def test_full_size_blip_base_export_gives_generate_ids(tmp_path):
    checkpoint = tmp_path / "blip-base"
    build_blip(WORDS, checkpoint, arch=BLIP_BASE)
    manifest = export(ExportOptions(checkpoint=str(checkpoint), out=str(tmp_path / "onnx"), samples=2))
    assert all(r["identical"] for r in manifest["parity"]["greedy_ids"].values())


@pytest.mark.parametrize("text_hidden, heads, scaled", [(128, 2, True), (96, 2, False)])
def test_scaling_the_query_is_bit_identical_to_dividing_the_scores(tmp_path, text_hidden, heads, scaled):
    """head_dim 64 (BLIP-base's): the exported decoder scales the query by 1/8; head_dim 48: it divides the scores."""
    import torch

    from blip_caption_ros.backends.kv_decoder import KVDecoder, VisionCrossKV, cache_shape

    arch = BlipArchitecture(image_size=64, vision_hidden=64, vision_layers=1, vision_heads=2, vision_intermediate=128,
                            text_hidden=text_hidden, text_layers=2, text_heads=heads, text_intermediate=256,
                            max_position_embeddings=32)
    model = build_blip(WORDS, tmp_path / "model", arch=arch)[0].eval()
    decoder = KVDecoder(model).eval()
    assert (decoder.query_scale is not None) == scaled
    torch.manual_seed(0)
    with torch.inference_mode():
        cross_kv = VisionCrossKV(model)(torch.randn(2, 3, 64, 64))
        args = (torch.randint(0, 10, (2, 3)), torch.arange(2, 5).expand(2, 3), torch.ones(2, 2, dtype=torch.long),
                torch.randn(cache_shape(model, 2, 2)), cross_kv)
        logits, new_kv = decoder(*args)
        decoder.query_scale = None
        divided_logits, divided_kv = decoder(*args)
    assert torch.equal(logits, divided_logits) and torch.equal(new_kv, divided_kv)
