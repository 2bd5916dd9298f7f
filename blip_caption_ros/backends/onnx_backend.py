"""The ONNX Runtime backend: runs a `blip-export` directory (vision.onnx + decoder.onnx with a KV cache).

`model` is the export directory. Its manifest is checked before anything is loaded (every file's sha256, so a
truncated copy or a file from another export is refused with a ModelLoadError). On the CPU it uses the CPU execution
provider; with device cuda[:N] the TensorRT and CUDA execution providers where onnxruntime-gpu has them. An fp32
export gives `generate`'s greedy ids exactly; an int8 export (`blip-export --int8`, the `int8/` subdirectory) is
approximate and faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import CaptionerConfig, ModelLoadError
from .engine_manifest import ManifestError, load_export_manifest
from .kv_decoder import SPLIT_DECODER
from .pixels import model_pixels


class OnnxCaptioner:
    backend = "onnxruntime"

    def __init__(self, config: CaptionerConfig, verify: bool = True, threads: int = 0, split_cross: bool = True):
        self.config = config
        self.model_name = config.model
        export_dir = Path(config.model)
        if not export_dir.is_dir():
            raise ModelLoadError(config.model, "no such directory (the onnxruntime backend loads a blip-export dir)")
        try:
            import onnxruntime as ort
            import torch

            from .model_loading import ModelFilesError, load_processor
        except ImportError as exc:
            raise ModelLoadError(config.model,
                                 f"the onnxruntime backend needs onnxruntime and transformers ({exc})") from exc
        try:
            self.manifest = load_export_manifest(export_dir, verify=verify)
        except ManifestError as exc:
            raise ModelLoadError(config.model, str(exc)) from exc
        providers, precision_problem = _providers(ort, config)
        if precision_problem:
            raise ModelLoadError(config.model, precision_problem)
        options = ort.SessionOptions()
        # ORT's worker threads busy-wait by default, which slows torch (and the node) 3x in the same process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # The split-cross decoder reads each layer's image keys/values in place; older exports only have decoder.onnx,
        # whose cross_kv input is sliced (copied) inside the graph on every token. split_cross=False forces decoder.onnx
        # (the latency benchmark compares both).
        graphs = self.manifest["graphs"]
        self.split_cross = split_cross and SPLIT_DECODER in graphs
        self.sessions = {}
        for name, graph in (("vision", "vision"), ("decoder", SPLIT_DECODER if self.split_cross else "decoder")):
            path = export_dir / graphs[graph]["file"]
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelLoadError(config.model, f"onnxruntime cannot load {path.name}: {first}") from exc
        try:
            self.processor = load_processor(export_dir)
        except ModelFilesError as exc:  # a broken or missing processor copy
            raise ModelLoadError(config.model, f"processor files: {exc.reason}") from exc
        self.providers = self.sessions["decoder"].get_providers()
        tokens = self.manifest["tokens"]
        self.bos, self.eos, self.pad = tokens["bos"], tokens["eos"], tokens["pad"]
        self._torch = torch

    @classmethod
    def from_export_dir(cls, export_dir, verify: bool = True, device: str = "cpu", split_cross: bool = True,
                        **config) -> OnnxCaptioner:
        return cls(CaptionerConfig(model=str(export_dir), backend="onnxruntime", device=device, **config),
                   verify=verify, split_cross=split_cross)

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
        """cross_kv [layers, 2, batch, heads, image tokens, head_dim] of preprocessed images."""
        return self.sessions["vision"].run(None, {"pixel_values": np.ascontiguousarray(pixels, np.float32)})[0]

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

    def decoder_state(self, cross_kv: np.ndarray) -> _OrtDecoderState:
        """A fresh KV cache over `encode`'s cross_kv (rows = its batch axis) for decoding.decode."""
        return _OrtDecoderState(self.sessions["decoder"], cross_kv, self._torch, split=self.split_cross)


class _OrtDecoderState:
    """Dynamic KV cache in numpy: each step appends the new keys/values (a few MB at caption lengths)."""

    def __init__(self, session, cross_kv: np.ndarray, torch, split: bool = False):
        layers, _, rows, heads, _, head_dim = cross_kv.shape
        self.session, self.torch = session, torch
        cross_kv = np.ascontiguousarray(cross_kv, np.float32)
        # cross_kv[l, k] of a contiguous array is a contiguous view: onnxruntime reads it without a copy.
        self.cross = ({f"cross_{kind}_{layer}": cross_kv[layer, index] for layer in range(layers)
                       for index, kind in enumerate("kv")} if split else {"cross_kv": cross_kv})
        self.past = np.zeros((layers, 2, rows, heads, 0, head_dim), np.float32)

    def step(self, input_ids):
        ids = input_ids.numpy().astype(np.int64)
        rows, new = ids.shape
        cached = self.past.shape[4]
        logits, new_kv = self.session.run(None, {
            "input_ids": ids,
            "position_ids": np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (rows, new)).copy(),
            "past_mask": np.ones((rows, cached), np.int64),
            "past_kv": self.past,
            **self.cross,
        })
        self.past = np.concatenate([self.past, new_kv], axis=4)
        return self.torch.from_numpy(logits)

    def reorder(self, rows) -> None:
        self.past = np.ascontiguousarray(self.past[:, :, rows.numpy()])


def _providers(ort, config: CaptionerConfig) -> tuple[list, str]:
    """Execution providers for config.device, and a reason the precision cannot be honoured (or "")."""
    if config.device == "cpu":
        if config.precision != "fp32":
            return [], (f"precision {config.precision!r}: the onnxruntime backend runs the exported fp32 graphs on "
                        "the CPU (use an int8 export for speed, or the torch backend for bf16)")
        return ["CPUExecutionProvider"], ""
    device_id = int(config.device.partition(":")[2] or 0)
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return [], (f"device {config.device!r}: this onnxruntime has no CUDA execution provider "
                    f"(available: {', '.join(available)}); install onnxruntime-gpu")
    if config.precision == "bf16":
        return [], "precision 'bf16' is not supported by the onnxruntime backend; use fp32 or fp16"
    providers = []
    if "TensorrtExecutionProvider" in available:
        providers.append(("TensorrtExecutionProvider", {"device_id": device_id,
                                                        "trt_fp16_enable": config.precision == "fp16"}))
    elif config.precision == "fp16":
        return [], "precision 'fp16' needs onnxruntime's TensorRT execution provider (or the tensorrt backend)"
    providers += [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return providers, ""
