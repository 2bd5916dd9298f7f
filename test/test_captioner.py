"""captioner + torch backend on a tiny random BLIP: batches, prompts, precision, and load errors."""

import numpy as np
import pytest

from blip_caption_ros.backends import (
    BACKENDS,
    Captioner,
    CaptionerConfig,
    ModelLoadError,
    load_captioner,
    register_backend,
)

IMAGES = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(2)]


@pytest.fixture(scope="module")
def captioner(tiny_blip_dir):
    return load_captioner(CaptionerConfig(model=str(tiny_blip_dir), prompt="a picture of", max_new_tokens=8))


def test_batch_of_cameras_gives_one_caption_each_without_prompt(captioner, tiny_blip_dir):
    assert isinstance(captioner, Captioner)
    assert (captioner.backend, captioner.model_name) == ("torch", str(tiny_blip_dir))
    captions = captioner.caption(IMAGES)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert not any(c.startswith("a picture of") for c in captions)
    assert captioner.caption([]) == []


def test_batched_equals_single_and_readonly_views_are_accepted(captioner):
    view = np.frombuffer(IMAGES[0].tobytes(), np.uint8).reshape(IMAGES[0].shape)  # read-only, like a message
    assert captioner.caption([view])[0] == captioner.caption(IMAGES)[0]


def test_prompt_can_be_changed_per_call(captioner):
    unconditioned = captioner.caption(IMAGES[:1], prompt="")
    assert len(unconditioned) == 1


def test_bf16_and_beam_search_run_on_cpu(tiny_blip_dir):
    config = CaptionerConfig(model=str(tiny_blip_dir), precision="bf16", num_beams=2, max_new_tokens=4)
    assert len(load_captioner(config).caption(IMAGES)) == 2


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (CaptionerConfig(model="/no/such/model"), "'/no/such/model': no such directory"),
        (CaptionerConfig(model="not-cached/blip-model"), "'not-cached/blip-model'"),
        (CaptionerConfig(model="m", backend="tensorrt-someday"), "unknown backend 'tensorrt-someday'; available: "),
    ],
)
def test_unloadable_models_raise_one_line_model_load_error(config, match):
    with pytest.raises(ModelLoadError, match=match) as error:
        load_captioner(config)
    assert "\n" not in str(error.value)


def test_fp16_needs_cuda_and_empty_dir_is_not_a_model(tiny_blip_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="fp16 needs a CUDA device"):
        load_captioner(CaptionerConfig(model=str(tiny_blip_dir), precision="fp16"))
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_captioner(CaptionerConfig(model=str(tmp_path)))


def test_config_is_validated():
    with pytest.raises(ValueError, match="precision 'int4'.*num_beams must be >= 1"):
        CaptionerConfig(model="m", precision="int4", num_beams=0)


def test_registered_backends_are_loaded_lazily_or_directly(monkeypatch):
    class Echo:
        backend, model_name = "echo", "none"

        def __init__(self, config):
            self.config = config

        def caption(self, images, prompt=None):
            return [f"{image.shape}" for image in images]

    monkeypatch.setitem(BACKENDS, "echo", Echo)
    assert load_captioner(CaptionerConfig(model="x", backend="echo")).caption(IMAGES[:1]) == ["(48, 64, 3)"]
    register_backend("missing", "blip_caption_ros.no_such_backend:Factory")
    try:
        with pytest.raises(ModelLoadError, match="backend 'missing' is not installed"):
            load_captioner(CaptionerConfig(model="x", backend="missing"))
    finally:
        BACKENDS.pop("missing")


def test_a_signal_during_a_runtime_import_stays_a_stop_and_a_missing_runtime_is_one_line(monkeypatch, tmp_path):
    """pybind11 reports an exception raised while its extension initialises (a SIGINT's StartInterrupted during
    start-up) as ImportError("initialization failed") caused by it: that is a stop, not a missing backend."""
    import importlib.abc
    import sys

    from blip_caption_ros.backends.onnx_backend import OnnxCaptioner
    from blip_caption_ros.shutdown import StartInterrupted

    class FailingImport(importlib.abc.MetaPathFinder):
        def __init__(self, cause):
            self.cause = cause

        def find_spec(self, name, path=None, target=None):
            if name == "onnxruntime":
                raise ImportError("initialization failed") from self.cause
            return None

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    config = CaptionerConfig(model=str(tmp_path), backend="onnxruntime")
    monkeypatch.setattr(sys, "meta_path", [FailingImport(StartInterrupted()), *sys.meta_path])
    with pytest.raises(StartInterrupted):
        OnnxCaptioner(config)
    sys.meta_path[0] = FailingImport(OSError("libonnxruntime.so: cannot open shared object file"))
    with pytest.raises(ModelLoadError, match="needs onnxruntime .*initialization failed.*install"):
        OnnxCaptioner(config)
