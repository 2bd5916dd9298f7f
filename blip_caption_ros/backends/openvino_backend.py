"""The OpenVINO backend: runs a `blip-export` directory (the same ONNX graphs onnxruntime runs) on OpenVINO Runtime.

For x86 vehicles without an NVIDIA GPU: OpenVINO's CPU plugin is faster than onnxruntime on the ViT encoder and the
decoder step, and the same export also runs on an Intel GPU or NPU (`device` GPU, GPU.N, NPU; cpu or CPU for the
processor). No second export path: OpenVINO reads vision.onnx and decoder.split.onnx (decoder.onnx for older exports)
directly.

Precision:
- fp32: exact (`generate`'s greedy ids). OpenVINO's CPU plugin runs bf16 by default on CPUs with AVX512_BF16/AMX,
  which silently changes captions, so fp32 pins `INFERENCE_PRECISION_HINT` to f32.
- bf16 (CPU) / fp16 (GPU, NPU): approximate, the fp32 graphs at OpenVINO's reduced inference precision.
- int8: approximate, the export's dynamic-int8 graphs (`blip-export --int8`, the `int8/` subdirectory; `model` may
  name either the export or its int8/ directly).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import CaptionerConfig, ModelLoadError, device_problem
from .engine_manifest import ManifestError, load_export_manifest
from .kv_decoder import SPLIT_DECODER
from .pixels import model_pixels

log = logging.getLogger(__name__)

#: precision -> OpenVINO inference precision of the fp32 graphs; int8 runs the int8 export at f32.
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def openvino_device(device: str) -> str:
    """The OpenVINO name of a `device` parameter: cpu -> CPU, gpu.1 -> GPU.1."""
    return device.upper()


class OpenVinoCaptioner:
    backend = "openvino"

    def __init__(self, config: CaptionerConfig, verify: bool = True, threads: int = 0, split_cross: bool = True,
                 performance: dict | None = None):
        """`threads` (0 = OpenVINO's choice) and `performance` (extra OpenVINO properties, e.g. NUM_STREAMS or
        ENABLE_CPU_PINNING) are for benchmarks; the node uses the defaults."""
        self.config = config
        self.model_name = config.model
        problem = device_problem(self.backend, config.device)
        if problem:
            raise ModelLoadError(config.model, problem)
        try:
            import openvino as ov
            import torch

            from .model_loading import ModelFilesError, load_processor
        except ImportError as exc:
            raise ModelLoadError(config.model, f"the openvino backend needs openvino and transformers ({exc}); "
                                 "install the package's [openvino] extra") from exc
        export_dir = _graph_dir(Path(config.model), config)
        try:
            self.manifest = load_export_manifest(export_dir, verify=verify)
        except ManifestError as exc:
            raise ModelLoadError(config.model, str(exc)) from exc
        int8_export = self.manifest.get("variant", "fp32") != "fp32"
        if int8_export != (config.precision == "int8"):
            raise ModelLoadError(config.model, (
                f"precision {config.precision!r} on an int8 export: set precision int8 (approximate) or point "
                "model at the fp32 export" if int8_export else
                "precision 'int8' needs an int8 export (blip-export --int8 writes its int8/ subdirectory)"))
        self.device = openvino_device(config.device)
        core = ov.Core()
        available = core.available_devices
        if not any(name == self.device or name.startswith(self.device + ".") for name in available):
            raise ModelLoadError(config.model, f"device {config.device!r}: OpenVINO finds no such device here "
                                 f"(available: {', '.join(available) or 'none'})")
        self.inference_precision = _INFERENCE_PRECISION[config.precision]
        precision_problem = _precision_problem(core, self.device, config.precision)
        if precision_problem:
            raise ModelLoadError(config.model, precision_problem)
        self.exact = config.precision == "fp32"
        if not self.exact:
            log.warning("openvino precision %s is approximate: captions can differ from fp32's", config.precision)
        properties = {"INFERENCE_PRECISION_HINT": self.inference_precision, "PERFORMANCE_HINT": "LATENCY",
                      **({"INFERENCE_NUM_THREADS": threads} if threads else {}), **(performance or {})}
        graphs = self.manifest["graphs"]
        self.split_cross = split_cross and SPLIT_DECODER in graphs
        self.compiled = {}
        for name, graph in (("vision", "vision"), ("decoder", SPLIT_DECODER if self.split_cross else "decoder")):
            path = export_dir / graphs[graph]["file"]
            try:
                self.compiled[name] = core.compile_model(core.read_model(str(path)), self.device, properties)
            except RuntimeError as exc:  # OpenVINO raises RuntimeError/openvino.Exception with pages of text
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelLoadError(config.model, f"openvino cannot load {path.name}: {first}") from exc
        self.requests = {name: compiled.create_infer_request() for name, compiled in self.compiled.items()}
        try:
            self.processor = load_processor(export_dir)
        except ModelFilesError as exc:
            raise ModelLoadError(config.model, f"processor files: {exc.reason}") from exc
        tokens = self.manifest["tokens"]
        self.bos, self.eos, self.pad = tokens["bos"], tokens["eos"], tokens["pad"]
        self._torch = torch

    @classmethod
    def from_export_dir(cls, export_dir, verify: bool = True, device: str = "cpu", precision: str = "fp32",
                        split_cross: bool = True, threads: int = 0, performance: dict | None = None,
                        **config) -> OpenVinoCaptioner:
        return cls(CaptionerConfig(model=str(export_dir), backend="openvino", device=device, precision=precision,
                                   **config), verify=verify, split_cross=split_cross, threads=threads,
                   performance=performance)

    # ------------------------------------------------------------------------------------------------------------

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        from .decoding import captions_from_ids, start_ids

        if not images:
            return []
        prompt = self.config.prompt if prompt is None else prompt
        pixels = model_pixels(self.processor, images)
        start = start_ids(self.processor.tokenizer, prompt, self.bos, len(images))
        ids = self.generate_ids(pixels, start, self.config.max_new_tokens, num_beams=self.config.num_beams)
        return captions_from_ids(self.processor.tokenizer, ids, prompt)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """cross_kv [layers, 2, batch, heads, image tokens, head_dim] of preprocessed images (a copy: the request's
        output buffer is reused by the next call)."""
        request = self.requests["vision"]
        request.infer({"pixel_values": np.ascontiguousarray(pixels, np.float32)}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()

    def generate_ids(self, pixels: np.ndarray, start, max_new_tokens: int, min_new_tokens: int = 0,
                     num_beams: int = 1):
        """Start ids + generated ids (torch int64), as `generate` returns them."""
        from .decoding import DecodeSettings, decode

        cross_kv = self.encode(pixels)
        settings = DecodeSettings(max_new_tokens=max_new_tokens, eos_token_id=self.eos, pad_token_id=self.pad,
                                  min_new_tokens=min_new_tokens, num_beams=num_beams)
        if num_beams > 1:
            cross_kv = np.repeat(cross_kv, num_beams, axis=2)
        return decode(lambda rows: self.decoder_state(cross_kv), start, settings)

    def decoder_state(self, cross_kv: np.ndarray) -> _OpenVinoDecoderState:
        """A fresh KV cache over `encode`'s cross_kv (rows = its batch axis) for decoding.decode."""
        return _OpenVinoDecoderState(self.requests["decoder"], cross_kv, self._torch, split=self.split_cross)


class _OpenVinoDecoderState:
    """Dynamic KV cache in numpy; the image keys/values are bound to the request once per caption, not per token."""

    def __init__(self, request, cross_kv: np.ndarray, torch, split: bool):
        layers, _, rows, heads, _, head_dim = cross_kv.shape
        self.request, self.torch = request, torch
        self.cross_kv = np.ascontiguousarray(cross_kv, np.float32)  # kept alive: the request reads it in place
        import openvino as ov

        cross = ({f"cross_{kind}_{layer}": self.cross_kv[layer, index] for layer in range(layers)
                  for index, kind in enumerate("kv")} if split else {"cross_kv": self.cross_kv})
        for name, array in cross.items():
            request.set_tensor(name, ov.Tensor(array, shared_memory=True))
        self.past = np.zeros((layers, 2, rows, heads, 0, head_dim), np.float32)

    def step(self, input_ids):
        ids = input_ids.numpy().astype(np.int64)
        rows, new = ids.shape
        cached = self.past.shape[4]
        self.request.infer({
            "input_ids": ids,
            "position_ids": np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (rows, new)).copy(),
            "past_mask": np.ones((rows, cached), np.int64),
            "past_kv": self.past,
        }, share_inputs=True)
        logits = self.request.get_tensor("logits").data.copy()
        self.past = np.concatenate([self.past, self.request.get_tensor("new_kv").data], axis=4)
        return self.torch.from_numpy(logits)

    def reorder(self, rows) -> None:
        self.past = np.ascontiguousarray(self.past[:, :, rows.numpy()])


def _graph_dir(model: Path, config: CaptionerConfig) -> Path:
    """The directory whose graphs run: the export itself, or its int8/ for precision int8."""
    if not model.is_dir():
        raise ModelLoadError(config.model, "no such directory (the openvino backend loads a blip-export dir)")
    if config.precision == "int8" and (model / "int8").is_dir():
        return model / "int8"
    return model


def _precision_problem(core, device: str, precision: str) -> str:
    """Why `device` cannot run `precision` (or ""), from the plugin's OPTIMIZATION_CAPABILITIES."""
    wanted = {"bf16": "BF16", "fp16": "FP16"}.get(precision)
    if wanted is None:
        return ""
    capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    if wanted not in capabilities:
        return (f"precision {precision!r}: OpenVINO's {device} plugin here has no {wanted} support "
                f"(capabilities: {', '.join(capabilities)}); use fp32 (exact) or int8")
    return ""
