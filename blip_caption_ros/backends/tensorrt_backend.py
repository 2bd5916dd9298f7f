"""The TensorRT backend: engines built from a `blip-export` directory, run with a static KV cache on the GPU.

`model` is the export directory; engines live in `<export>/tensorrt/` with `engine_manifest.json` (the ONNX hashes
they were built from, TensorRT version, GPU name and compute capability, precision, profile shapes). An engine only
runs on the GPU model and TensorRT version that built it: a mismatch is a ModelLoadError naming both, unless
`force_engine_update` is set, in which case the engines are rebuilt from the ONNX files (minutes) and the manifest is
rewritten. `blip-export --tensorrt-only --out EXPORT` builds them ahead of time on the vehicle.

Runtime: every buffer is a torch CUDA tensor allocated once for the largest batch (inputs, the [L, 2, rows, heads,
max_len, head_dim] cache, cross keys/values, logits), addressed with `set_tensor_address` and run with
`execute_async_v3` on torch's current stream. The decoder always sees the whole static cache with a mask of the filled
slots, so its shapes are fixed after the prompt; each step writes the new keys/values into the cache on the device.
Tokens are picked by decoding's numpy loop from one [rows, vocab] logits copy per token. The buffers are torch's, so
this backend needs torch with CUDA (JetPack's), unlike onnxruntime and openvino.

UNVERIFIED here: written against the TensorRT 10 Python API and checked only on machines without TensorRT; run
`scripts/verify_gpu_backends.py` on a GPU/Jetson with TensorRT to verify it (parity with the torch backend, latency).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import CaptionerConfig, ModelLoadError
from .caption_settings import CaptionSettingsError, model_caption_settings
from .engine_manifest import (
    ENGINE_DIR,
    ENGINE_FORMAT,
    ENGINE_MANIFEST,
    ManifestError,
    check_engine_manifest,
    file_hashes,
    load_export_manifest,
    read_manifest,
    require_hashed,
    staged_directory,
    verify_files,
    write_json_atomic,
)
from .static_kv import MAX_BATCH, MAX_PROMPT_TOKENS, StaticKVState

#: engine -> its plan file in the engine directory
ENGINE_FILES = {"vision": "vision.plan", "decoder": "decoder.plan"}


class EngineBuildError(RuntimeError):
    """TensorRT engines cannot be built here (no TensorRT, no GPU, a parser or builder failure)."""


def require_tensorrt():
    """The tensorrt module, or EngineBuildError with one line saying what is missing."""
    try:
        import torch
    except ImportError as exc:
        raise EngineBuildError(f"needs torch with CUDA ({exc})") from exc
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineBuildError(
            "the tensorrt Python package is not installed (JetPack ships it; on x86: pip install tensorrt)") from exc
    if not torch.cuda.is_available():
        raise EngineBuildError(f"TensorRT {tensorrt.__version__} is installed but no CUDA GPU is visible")
    return tensorrt


def runtime_info(device: int = 0) -> dict:
    """What an engine is tied to, for this machine: TensorRT version, GPU name, compute capability."""
    import torch

    trt = require_tensorrt()
    major, minor = torch.cuda.get_device_capability(device)
    return {"tensorrt_version": trt.__version__, "gpu_name": torch.cuda.get_device_name(device),
            "compute_capability": f"{major}.{minor}"}


def read_engine_manifest(engine_dir: Path) -> dict:
    """The engine directory's manifest, refused unless it hashes both plan files (the files this backend opens)."""
    path = Path(engine_dir) / ENGINE_MANIFEST
    manifest = read_manifest(path, ENGINE_FORMAT)
    require_hashed(manifest, ENGINE_FILES.values(), path)
    return manifest


def profile_shapes(onnx_manifest: dict, max_batch: int, max_prompt_tokens: int, max_new_tokens: int) -> dict:
    """min/opt/max shapes of every engine input; the decoder's cache length is fixed (static cache)."""
    model = onnx_manifest["model"]
    layers, heads = model["text_layers"], model["text_heads"]
    head_dim = model["text_hidden"] // heads
    size, tokens = model["image_size"], model["image_tokens"]
    cache = max_prompt_tokens + max_new_tokens

    def rows(shape_of):
        return [list(shape_of(1, 1)), list(shape_of(max_batch, 1)), list(shape_of(max_batch, max_prompt_tokens))]

    return {
        "cache_length": cache, "max_batch": max_batch, "max_prompt_tokens": max_prompt_tokens,
        "vision": {"pixel_values": [[1, 3, size, size], [max_batch, 3, size, size], [max_batch, 3, size, size]]},
        "decoder": {
            "input_ids": rows(lambda b, s: (b, s)),
            "position_ids": rows(lambda b, s: (b, s)),
            "past_mask": rows(lambda b, s: (b, cache)),
            "past_kv": rows(lambda b, s: (layers, 2, b, heads, cache, head_dim)),
            "cross_kv": rows(lambda b, s: (layers, 2, b, heads, tokens, head_dim)),
        },
    }


def build_engines(export_dir, precision: str = "fp16", max_batch: int = MAX_BATCH,
                  max_prompt_tokens: int = MAX_PROMPT_TOKENS, max_new_tokens: int = 20,
                  workspace_gb: float = 4.0) -> dict:
    """Build vision and decoder engines from the export's ONNX files into `<export>/tensorrt`; returns the manifest.

    Written to a temporary directory and swapped in only when both engines built, so a failed build never leaves
    engines that look valid.
    """
    trt = require_tensorrt()
    export_dir = Path(export_dir)
    onnx_manifest = load_export_manifest(export_dir)
    if precision not in ("fp16", "fp32"):
        raise EngineBuildError(f"precision {precision!r}: engines are built fp16 or fp32")
    shapes = profile_shapes(onnx_manifest, max_batch, max_prompt_tokens, max_new_tokens)
    logger = trt.Logger(trt.Logger.WARNING)
    with staged_directory(export_dir / ENGINE_DIR) as staging:
        timings = {}
        for name in ("vision", "decoder"):
            started = time.monotonic()
            onnx_path = export_dir / onnx_manifest["graphs"][name]["file"]
            builder = trt.Builder(logger)
            network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(onnx_path)):
                errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
                raise EngineBuildError(f"TensorRT's ONNX parser rejects {onnx_path.name}: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
            if precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
            else:  # TensorRT allows TF32 by default; fp32 engines are meant to match PyTorch's fp32 ids
                config.clear_flag(trt.BuilderFlag.TF32)
            profile = builder.create_optimization_profile()
            for tensor, (low, opt, high) in shapes[name].items():
                profile.set_shape(tensor, low, opt, high)
            config.add_optimization_profile(profile)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise EngineBuildError(f"TensorRT failed to build the {name} engine (see the log above)")
            (staging / ENGINE_FILES[name]).write_bytes(bytes(serialized))
            timings[name] = round(time.monotonic() - started, 1)
        onnx_files = {graph["file"] for graph in onnx_manifest["graphs"].values()}
        processor_files = onnx_manifest["processor_files"]
        manifest = {
            "format": ENGINE_FORMAT, "precision": precision, "built_with": runtime_info(),
            "onnx_sha256": {f: onnx_manifest["files"][f] for f in sorted(onnx_files)},
            "processor_files": {f: onnx_manifest["files"][f] for f in processor_files},
            "profiles": shapes, "tokens": onnx_manifest["tokens"], "model": onnx_manifest["model"],
            "build_s": timings, "files": file_hashes(staging, ENGINE_FILES.values()),
        }
        write_json_atomic(staging / ENGINE_MANIFEST, manifest)
    return manifest


class TensorRTCaptioner:
    backend = "tensorrt"

    def __init__(self, config: CaptionerConfig, engine_dir: str | None = None, force_engine_update: bool | None = None):
        self.model_name = config.model
        export_dir = Path(config.model)
        engine_dir = Path(engine_dir or config.engine_dir or export_dir / ENGINE_DIR)
        if force_engine_update is None:
            force_engine_update = config.force_engine_update
        if not export_dir.is_dir():
            raise ModelLoadError(config.model, "no such directory (the tensorrt backend loads a blip-export dir)")
        if not config.device.startswith("cuda"):
            raise ModelLoadError(config.model, f"the tensorrt backend runs on cuda[:N], not {config.device!r}")
        if config.precision == "bf16":
            raise ModelLoadError(config.model, "precision 'bf16': TensorRT engines are built fp16 or fp32")
        try:
            trt = require_tensorrt()
            import torch

            from .export_processor import load_export_processor
            from .model_source import ModelFilesError

            self.onnx_manifest = load_export_manifest(export_dir)
            self.settings = model_caption_settings(export_dir)  # read once the export is verified
            self.config = config = config.filled_from(self.settings)
            runtime = runtime_info(config.device_index)
            self.manifest = self._engine_manifest(engine_dir, runtime, force_engine_update, export_dir)
            verify_files(engine_dir, self.manifest)
            self.processor = load_export_processor(export_dir, self.onnx_manifest["processor_files"])
        except (EngineBuildError, ManifestError) as exc:
            raise ModelLoadError(config.model, str(exc)) from exc
        except ModelFilesError as exc:
            raise ModelLoadError(config.model, f"processor files: {exc.reason}") from exc
        except CaptionSettingsError as exc:
            raise ModelLoadError(config.model, str(exc)) from exc
        self._torch = torch
        self.device = torch.device(config.device)
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self.engines = {name: _Engine(trt, self._runtime, engine_dir / file, self.device)
                        for name, file in ENGINE_FILES.items()}
        profiles = self.manifest["profiles"]
        self.max_batch, self.cache_length = profiles["max_batch"], profiles["cache_length"]
        self.max_prompt_tokens = profiles["max_prompt_tokens"]
        tokens = self.manifest["tokens"]
        self.bos, self.eos, self.pad = tokens["bos"], tokens["eos"], tokens["pad"]
        model = self.manifest["model"]
        self._layout = (model["text_layers"], model["text_heads"], model["text_hidden"] // model["text_heads"],
                        model["image_tokens"], model["vocab_size"])
        self._buffers = _StaticBuffers(torch, self.device, self.max_batch, self.cache_length, self.max_prompt_tokens,
                                       *self._layout)

    def _engine_manifest(self, engine_dir: Path, runtime: dict, force: bool, export_dir: Path) -> dict:
        try:
            manifest = read_engine_manifest(engine_dir)
            check_engine_manifest(manifest, runtime, self.onnx_manifest)
            return manifest
        except ManifestError:
            if not force:
                raise
        if engine_dir != export_dir / ENGINE_DIR:
            raise EngineBuildError(f"force_engine_update rebuilds into {export_dir / ENGINE_DIR}, not {engine_dir}")
        precision = "fp32" if self.config.precision == "fp32" else "fp16"
        return build_engines(export_dir, precision=precision, max_new_tokens=self.config.max_new_tokens)

    # ------------------------------------------------------------------------------------------------------------

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        from .decoding import caption_images

        return caption_images(self.generate_ids, self.processor, self.config, self.bos, images, prompt)

    def generate_ids(self, pixels, start, max_new_tokens: int, min_new_tokens: int = 0, num_beams: int = 1):
        """Start ids + generated ids (numpy int64); `pixels` (numpy or torch) [images, 3, size, size]."""
        from .decoding import decode

        torch = self._torch
        images, rows = pixels.shape[0], pixels.shape[0] * num_beams
        problems = []
        if rows > self.max_batch:
            problems.append(f"{images} images x {num_beams} beams = {rows} rows > the engines' max batch "
                            f"{self.max_batch} (rebuild with a larger --max-batch)")
        if start.shape[1] > self.max_prompt_tokens or start.shape[1] + max_new_tokens > self.cache_length:
            problems.append(f"prompt of {start.shape[1]} tokens + {max_new_tokens} new exceeds the engines' "
                            f"prompt limit {self.max_prompt_tokens} / cache {self.cache_length}")
        if problems:
            raise ValueError("; ".join(problems))
        buffers = self._buffers
        pixels = torch.as_tensor(pixels).to(self.device, torch.float32).contiguous()
        cross = buffers.cross(images)
        self.engines["vision"].run({"pixel_values": pixels}, {"cross_kv": cross})
        if num_beams > 1:
            buffers.cross(rows).copy_(cross.repeat_interleave(num_beams, dim=2))
        return decode(self._state, np.asarray(start), max_new_tokens=max_new_tokens, eos_token_id=self.eos,
                      pad_token_id=self.pad, min_new_tokens=min_new_tokens, num_beams=num_beams)

    def _state(self, rows: int) -> StaticKVState:
        buffers, engine = self._buffers, self.engines["decoder"]
        cache, mask = buffers.cache(rows), buffers.mask(rows)

        def run(input_ids, positions):
            new_kv, logits = buffers.new_kv(rows, input_ids.shape[1]), buffers.logits(rows)
            engine.run({"input_ids": input_ids.contiguous(), "position_ids": positions.contiguous(),
                        "past_mask": mask, "past_kv": cache, "cross_kv": buffers.cross(rows)},
                       {"logits": logits, "new_kv": new_kv})
            return logits, new_kv

        return StaticKVState(cache, mask, run)


class _StaticBuffers:
    """Flat CUDA allocations for the largest batch; `view`s of their first elements give contiguous tensors for
    any smaller batch without reallocating."""

    def __init__(self, torch, device, max_rows, cache_len, max_prompt, layers, heads, head_dim, image_tokens, vocab):
        self.torch, self.device = torch, device
        self.layout = (layers, heads, head_dim, image_tokens, vocab)
        self.cache_len, self.max_prompt = cache_len, max_prompt
        kv = layers * 2 * max_rows * heads * head_dim
        self._flat = {
            "cross_kv": torch.empty(kv * image_tokens, device=device),
            "past_kv": torch.zeros(kv * cache_len, device=device),
            "new_kv": torch.empty(kv * max_prompt, device=device),
            "past_mask": torch.zeros(max_rows * cache_len, dtype=torch.long, device=device),
            "logits": torch.empty(max_rows * vocab, device=device),
        }

    def _view(self, name, shape):
        numel = int(np.prod(shape))
        return self._flat[name][:numel].view(shape)

    def cross(self, rows):
        layers, heads, head_dim, tokens, _ = self.layout
        return self._view("cross_kv", (layers, 2, rows, heads, tokens, head_dim))

    def cache(self, rows):
        layers, heads, head_dim, _, _ = self.layout
        return self._view("past_kv", (layers, 2, rows, heads, self.cache_len, head_dim))

    def new_kv(self, rows, new):
        layers, heads, head_dim, _, _ = self.layout
        return self._view("new_kv", (layers, 2, rows, heads, new, head_dim))

    def mask(self, rows):
        return self._view("past_mask", (rows, self.cache_len))

    def logits(self, rows):
        return self._view("logits", (rows, self.layout[4]))


class _Engine:
    """One deserialised engine and its execution context; runs on torch's current CUDA stream."""

    def __init__(self, trt, runtime, path: Path, device):
        import torch

        self.torch, self.path = torch, path
        with torch.cuda.device(device):
            self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ModelLoadError(str(path), "TensorRT cannot deserialise this engine (see the log above)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def run(self, inputs: dict, outputs: dict) -> None:
        context = self.context
        for name in self.inputs:
            tensor = inputs[name]
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        for name in self.outputs:
            expected = tuple(context.get_tensor_shape(name))
            if expected != tuple(outputs[name].shape):
                raise RuntimeError(f"{self.path.name}: output {name} has shape {expected}, buffer "
                                   f"{tuple(outputs[name].shape)}")
            context.set_tensor_address(name, outputs[name].data_ptr())
        if not context.execute_async_v3(self.torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"{self.path.name}: execute_async_v3 failed")

