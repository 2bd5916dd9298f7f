"""backend=onnxruntime: the same captions as the torch backend, a verified export directory, clear load errors, and
the real caption node running on it."""

import json
import shutil

import numpy as np
import pytest

from blip_caption_ros.backends import CaptionerConfig, ModelLoadError, load_captioner
from blip_caption_ros.backends.engine_manifest import ONNX_MANIFEST, file_hashes
from test.support import flip_byte

IMAGES = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture
def export_dir(tiny_export):
    return tiny_export


@pytest.mark.parametrize("prompt", ["", "a picture of", "city street at night"])
def test_captions_equal_the_torch_backend(export_dir, torch_captioner, prompt):
    onnx = load_captioner(CaptionerConfig(model=str(export_dir), backend="onnxruntime", max_new_tokens=12))
    assert (onnx.backend, onnx.model_name) == ("onnxruntime", str(export_dir))
    assert onnx.caption(IMAGES, prompt=prompt) == torch_captioner.caption(IMAGES, prompt=prompt)
    assert onnx.caption(IMAGES[:1], prompt=prompt) == torch_captioner.caption(IMAGES[:1], prompt=prompt)
    assert onnx.caption([]) == []


def test_beam_search_equals_the_torch_backend_here(export_dir, tiny_blip_dir):
    """Beam search is not promised token-for-token equal to transformers' (see decoding.py); on this model it is."""
    config = dict(max_new_tokens=10, num_beams=3, prompt="a picture of")
    onnx = load_captioner(CaptionerConfig(model=str(export_dir), backend="onnxruntime", **config))
    reference = load_captioner(CaptionerConfig(model=str(tiny_blip_dir), **config))
    assert onnx.caption(IMAGES) == reference.caption(IMAGES)


def test_int8_export_is_an_onnxruntime_model_too(export_dir):
    captioner = load_captioner(CaptionerConfig(model=str(export_dir / "int8"), backend="onnxruntime"))
    assert len(captioner.caption(IMAGES)) == 3
    by_precision = load_captioner(CaptionerConfig(model=str(export_dir), backend="onnxruntime", precision="int8"))
    assert by_precision.manifest["variant"] == "int8-dynamic"
    assert by_precision.caption(IMAGES) == captioner.caption(IMAGES)


def _copy(export_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy, ignore=shutil.ignore_patterns("int8"))
    return copy


def _load(model, **config):
    with pytest.raises(ModelLoadError) as error:
        load_captioner(CaptionerConfig(model=str(model), backend="onnxruntime", **config))
    assert "\n" not in str(error.value)
    return str(error.value)


def test_changed_missing_or_broken_files_are_refused(export_dir, tmp_path):
    copy = _copy(export_dir, tmp_path)
    flip_byte(copy / "decoder.onnx")
    assert "decoder.onnx does not match the manifest" in _load(copy)

    (copy / "decoder.split.onnx").write_bytes(b"not an onnx model")  # broken, with a manifest that agrees
    manifest = json.loads((copy / ONNX_MANIFEST).read_text())
    manifest["files"] = file_hashes(copy, manifest["files"])
    (copy / ONNX_MANIFEST).write_text(json.dumps(manifest))
    assert "onnxruntime cannot load decoder.split.onnx" in _load(copy)

    (copy / "vocab.txt").unlink()
    assert "vocab.txt is listed in the manifest but missing" in _load(copy)
    (copy / ONNX_MANIFEST).write_text("{")
    assert "is not readable JSON" in _load(copy)


def test_an_export_without_the_split_cross_decoder_still_loads(export_dir, tmp_path):
    """Exports written before decoder.split.onnx existed run on decoder.onnx, with the same captions."""
    copy = _copy(export_dir, tmp_path)
    (copy / "decoder.split.onnx").unlink()
    manifest = json.loads((copy / ONNX_MANIFEST).read_text())
    del manifest["graphs"]["decoder_split"]
    manifest["files"] = file_hashes(copy, [name for name in manifest["files"] if name != "decoder.split.onnx"])
    (copy / ONNX_MANIFEST).write_text(json.dumps(manifest))
    config = dict(backend="onnxruntime", max_new_tokens=10)
    old = load_captioner(CaptionerConfig(model=str(copy), **config))
    new = load_captioner(CaptionerConfig(model=str(export_dir), **config))
    assert not old.split_cross and new.split_cross
    assert old.caption(IMAGES) == new.caption(IMAGES)


def test_not_an_export_dir_and_unsupported_settings(export_dir, tiny_blip_dir, tmp_path):
    assert "onnx_manifest.json is missing" in _load(tiny_blip_dir)  # a checkpoint, not an export
    assert "no such directory" in _load(tmp_path / "nothing")
    assert "precision 'bf16'" in _load(export_dir, precision="bf16")
    assert "no CUDA execution provider" in _load(export_dir, device="cuda")
    assert "precision 'int8' needs an int8 export" in _load(_copy(export_dir, tmp_path), precision="int8")


@pytest.mark.slow
@pytest.mark.ros
def test_caption_node_runs_on_onnxruntime(export_dir, torch_captioner):
    """The real node (own process, real DDS) with backend=onnxruntime: a caption arrives, equal to torch's."""
    from test.ros_helpers import caption_one_frame

    caption, rgb = caption_one_frame("onnx", "-p", "backend:=onnxruntime", "-p", f"model:={export_dir}",
                                     "-p", "max_new_tokens:=12", "-p", "prompt:=a picture of")
    assert caption["backend"] == "onnxruntime"
    assert caption["caption"] == torch_captioner.caption([rgb], prompt="a picture of")[0]
