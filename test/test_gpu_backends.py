"""torch-cuda and tensorrt backends.

On any machine: the static-KV-cache decoding core of torch-cuda (without CUDA graphs) gives `generate`'s ids, and
both GPU backends refuse to start without their hardware/software with one clear line. Where CUDA (and TensorRT) is
present, the real GPU paths run; elsewhere those tests are skipped, never faked.
"""

import importlib.util

import numpy as np
import pytest
import torch

from blip_caption_ros.backends import CaptionerConfig, ModelLoadError, load_captioner
from blip_caption_ros.backends.decoding import start_ids
from blip_caption_ros.backends.tensorrt_backend import EngineBuildError, profile_shapes, require_tensorrt
from blip_caption_ros.backends.torch_cuda_backend import StaticCacheGenerator

CUDA = torch.cuda.is_available()
TENSORRT = CUDA and importlib.util.find_spec("tensorrt") is not None
IMAGES = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture(scope="module")
def tiny(tiny_blip_dir):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    model = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir).eval()
    processor = BlipProcessor.from_pretrained(tiny_blip_dir)
    return model, processor


@pytest.mark.parametrize(("prompt", "beams"), [("", 1), ("a picture of", 1), ("a picture of", 3)])
def test_static_cache_decoding_gives_generate_ids_on_cpu(tiny, prompt, beams):
    model, processor = tiny
    pixels = processor(images=IMAGES, return_tensors="pt").pixel_values
    kwargs = {"input_ids": processor.tokenizer([prompt] * 3, return_tensors="pt").input_ids} if prompt else {}
    with torch.inference_mode():
        expected = model.generate(pixel_values=pixels, max_new_tokens=10, num_beams=beams, **kwargs)
    generator = StaticCacheGenerator(model, max_rows=9, max_new_tokens=10, cuda_graphs=False)
    start = start_ids(processor.tokenizer, prompt, generator.bos, 3)
    assert torch.equal(generator.generate_ids(pixels, start, 10, num_beams=beams), expected)
    # forced length, as the benchmark runs it
    with torch.inference_mode():
        forced = model.generate(pixel_values=pixels, max_new_tokens=10, min_new_tokens=10, **kwargs)
    assert torch.equal(generator.generate_ids(pixels, start, 10, min_new_tokens=10), forced)


def test_static_cache_limits_are_checked(tiny):
    model, processor = tiny
    generator = StaticCacheGenerator(model, max_rows=2, max_new_tokens=5, cuda_graphs=False)
    pixels = processor(images=IMAGES, return_tensors="pt").pixel_values
    with pytest.raises(ValueError, match="exceed the preallocated 2 rows"):
        generator.generate_ids(pixels, start_ids(processor.tokenizer, "", generator.bos, 3), 5)
    with pytest.raises(ValueError, match="CUDA graphs need a model on a CUDA device"):
        StaticCacheGenerator(model, cuda_graphs=True)


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
def test_gpu_backends_refuse_cleanly_without_cuda(tiny_blip_dir, tmp_path):
    for backend, device in (("torch-cuda", "cuda"), ("torch-cuda", "cpu"), ("tensorrt", "cuda"), ("tensorrt", "cpu")):
        with pytest.raises(ModelLoadError) as error:
            load_captioner(CaptionerConfig(model=str(tiny_blip_dir), backend=backend, device=device))
        assert "\n" not in str(error.value)
    with pytest.raises(EngineBuildError) as error:
        require_tensorrt()
    assert "\n" not in str(error.value)


def test_tensorrt_profiles_cover_batch_and_static_cache():
    manifest = {"model": {"text_layers": 12, "text_heads": 12, "text_hidden": 768, "image_size": 384,
                          "image_tokens": 577}}
    shapes = profile_shapes(manifest, max_batch=6, max_prompt_tokens=16, max_new_tokens=20)
    assert shapes["cache_length"] == 36
    assert shapes["vision"]["pixel_values"] == [[1, 3, 384, 384], [6, 3, 384, 384], [6, 3, 384, 384]]
    assert shapes["decoder"]["input_ids"] == [[1, 1], [6, 1], [6, 16]]
    assert shapes["decoder"]["past_kv"][2] == [12, 2, 6, 12, 36, 64]
    assert shapes["decoder"]["cross_kv"][0] == [12, 2, 1, 12, 577, 64]


# --- GPU only -----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_torch_cuda_fp32_captions_equal_the_torch_backend(tiny_blip_dir):
    config = dict(model=str(tiny_blip_dir), device="cuda", max_new_tokens=12, prompt="a picture of")
    reference = load_captioner(CaptionerConfig(**config))
    fast = load_captioner(CaptionerConfig(backend="torch-cuda", **config))
    assert fast.caption(IMAGES) == reference.caption(IMAGES)
    assert fast.caption(IMAGES[:1]) == reference.caption(IMAGES[:1])  # another batch size: another graph
    assert fast.caption(IMAGES) == reference.caption(IMAGES)  # graph replays with fresh state


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_torch_cuda_fp16_runs(tiny_blip_dir):
    captioner = load_captioner(CaptionerConfig(model=str(tiny_blip_dir), backend="torch-cuda", device="cuda",
                                               precision="fp16", num_beams=2))
    assert len(captioner.caption(IMAGES)) == 3


@pytest.mark.skipif(not TENSORRT, reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engines_caption_like_torch_and_refuse_foreign_engines(tiny_blip_dir, tmp_path):
    import json

    from blip_caption_ros.backends.tensorrt_backend import TensorRTCaptioner, build_engines
    from blip_train.export import ExportOptions, export

    out = tmp_path / "onnx"
    export(ExportOptions(checkpoint=str(tiny_blip_dir), out=str(out), samples=2))
    config = CaptionerConfig(model=str(out), backend="tensorrt", device="cuda", precision="fp32", max_new_tokens=12,
                             prompt="a picture of")
    with pytest.raises(ModelLoadError, match="engine_manifest.json is missing"):
        load_captioner(config)
    build_engines(out, precision="fp32", max_batch=6, max_new_tokens=12)
    reference = load_captioner(CaptionerConfig(model=str(tiny_blip_dir), max_new_tokens=12, prompt="a picture of"))
    assert load_captioner(config).caption(IMAGES) == reference.caption(IMAGES)

    manifest_path = out / "tensorrt" / "engine_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["built_with"]["gpu_name"] = "Some Other GPU"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="GPU 'Some Other GPU' at build time"):
        load_captioner(config)
    rebuilt = TensorRTCaptioner(config, force_engine_update=True)
    assert rebuilt.manifest["built_with"]["gpu_name"] == torch.cuda.get_device_name()
    assert rebuilt.caption(IMAGES) == reference.caption(IMAGES)

    manifest = json.loads(manifest_path.read_text())
    del manifest["files"]["decoder.plan"]  # an engine the manifest no longer hashes is never deserialised
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="does not hash decoder.plan"):
        load_captioner(config)
