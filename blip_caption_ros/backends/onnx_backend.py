"""The ONNX Runtime backend: runs a `blip-export` directory (vision.onnx + decoder.onnx with a KV cache).

`model` is the export directory. Its manifest is checked before anything is loaded (every file's sha256, so a
truncated copy or a file from another export is refused with a ModelLoadError). On the CPU it uses the CPU execution
provider; with device cuda[:N] the TensorRT and CUDA execution providers where onnxruntime-gpu has them. An fp32
export gives `generate`'s greedy ids exactly; an int8 export (`blip-export --int8`, the `int8/` subdirectory, which
precision int8 picks; `model` may also name it directly) is approximate and faster.

What every runtime of a blip-export directory shares (the openvino backend too) lives here as well: `open_export`
(directory, int8 choice, verified manifest, processor, token ids) and `KVCacheState` (the decoder step over a numpy
KV cache, given the runtime's run function).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import CaptionerConfig, ModelLoadError
from .engine_manifest import ManifestError, load_export_manifest
from .kv_decoder import SPLIT_DECODER


@dataclass(frozen=True)
class OpenedExport:
    """A verified blip-export directory: where its graphs are, its manifest, processor and token ids."""

    directory: Path
    manifest: dict
    processor: object
    bos: int
    eos: int
    pad: int

    @property
    def int8(self) -> bool:
        return self.manifest.get("variant", "fp32") != "fp32"

    def graph_path(self, graph: str) -> Path:
        return self.directory / self.manifest["graphs"][graph]["file"]


def open_export(config: CaptionerConfig, backend: str, verify: bool = True) -> OpenedExport:
    """The export `config.model` names (its int8/ subdirectory for precision int8), manifest checked (every sha256
    when `verify`), processor loaded; ModelLoadError with a one-line reason otherwise."""
    from .model_loading import ModelFilesError, load_processor

    directory = Path(config.model)
    if not directory.is_dir():
        raise ModelLoadError(config.model, f"no such directory (the {backend} backend loads a blip-export dir)")
    if config.precision == "int8" and (directory / "int8").is_dir():
        directory = directory / "int8"
    try:
        manifest = load_export_manifest(directory, verify=verify)
    except ManifestError as exc:
        raise ModelLoadError(config.model, str(exc)) from exc
    if config.precision == "int8" and manifest.get("variant", "fp32") == "fp32":
        raise ModelLoadError(config.model, "precision 'int8' needs an int8 export (blip-export --int8 writes its "
                             "int8/ subdirectory)")
    try:
        processor = load_processor(directory)
    except ModelFilesError as exc:  # a broken or missing processor copy
        raise ModelLoadError(config.model, f"processor files: {exc.reason}") from exc
    tokens = manifest["tokens"]
    return OpenedExport(directory, manifest, processor, tokens["bos"], tokens["eos"], tokens["pad"])


def decoder_graph(manifest: dict, split_cross: bool = True) -> str:
    """The decoder graph to run: the split-cross one where the export has it (see OnnxCaptioner)."""
    return SPLIT_DECODER if split_cross and SPLIT_DECODER in manifest["graphs"] else "decoder"


def first_line(exc: BaseException) -> str:
    """A runtime's multi-page error message as one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def cross_feeds(cross_kv: np.ndarray, split: bool) -> dict[str, np.ndarray]:
    """The decoder's image key/value inputs: one view per layer and key/value (split graph), or cross_kv itself.

    cross_kv[l, k] of a contiguous array is a contiguous view: the runtimes read it without a copy."""
    if not split:
        return {"cross_kv": cross_kv}
    return {f"cross_{kind}_{layer}": cross_kv[layer, index] for layer in range(cross_kv.shape[0])
            for index, kind in enumerate("kv")}


class OnnxCaptioner:
    backend = "onnxruntime"

    def __init__(self, config: CaptionerConfig, verify: bool = True, split_cross: bool = True, threads: int = 0):
        """`threads`: intra-op threads (0 = onnxruntime's choice; the latency benchmark sets it)."""
        self.config = config
        self.model_name = config.model
        try:
            import onnxruntime as ort
            import torch
        except ImportError as exc:
            raise ModelLoadError(config.model,
                                 f"the onnxruntime backend needs onnxruntime and transformers ({exc})") from exc
        if not Path(config.model).is_dir():
            raise ModelLoadError(config.model, "no such directory (the onnxruntime backend loads a blip-export dir)")
        providers, precision_problem = _providers(ort, config)
        if precision_problem:
            raise ModelLoadError(config.model, precision_problem)
        export = open_export(config, self.backend, verify)
        self.export, self.manifest, self.processor = export, export.manifest, export.processor
        options = session_options(ort, threads)
        # The split-cross decoder reads each layer's image keys/values in place; older exports only have decoder.onnx,
        # whose cross_kv input is sliced (copied) inside the graph on every token. split_cross=False forces decoder.onnx
        # (the latency benchmark compares both).
        decoder = decoder_graph(self.manifest, split_cross)
        self.split_cross = decoder == SPLIT_DECODER
        self.sessions = {}
        for name, graph in (("vision", "vision"), ("decoder", decoder)):
            path = export.graph_path(graph)
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
                raise ModelLoadError(config.model, f"onnxruntime cannot load {path.name}: {first_line(exc)}") from exc
        self.providers = self.sessions["decoder"].get_providers()
        self.bos, self.eos, self.pad = export.bos, export.eos, export.pad
        self._torch = torch

    @classmethod
    def from_export_dir(cls, export_dir, verify: bool = True, device: str = "cpu", split_cross: bool = True,
                        **config) -> OnnxCaptioner:
        return cls(CaptionerConfig(model=str(export_dir), backend="onnxruntime", device=device, **config),
                   verify=verify, split_cross=split_cross)

    # ------------------------------------------------------------------------------------------------------------

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        from .decoding import caption_images

        return caption_images(self.generate_ids, self.processor, self.config, self.bos, images, prompt)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """cross_kv [layers, 2, batch, heads, image tokens, head_dim] of preprocessed images."""
        return self.sessions["vision"].run(None, {"pixel_values": np.ascontiguousarray(pixels, np.float32)})[0]

    def generate_ids(self, pixels: np.ndarray, start, max_new_tokens: int, min_new_tokens: int = 0,
                     num_beams: int = 1):
        """Start ids + generated ids (torch int64), as `generate` returns them."""
        return generate_with_cache(self, pixels, start, max_new_tokens, min_new_tokens, num_beams)

    def decoder_state(self, cross_kv: np.ndarray) -> KVCacheState:
        """A fresh KV cache over `encode`'s cross_kv (rows = its batch axis) for decoding.decode."""
        cross_kv = np.ascontiguousarray(cross_kv, np.float32)
        feeds = cross_feeds(cross_kv, self.split_cross)
        session = self.sessions["decoder"]
        return KVCacheState(lambda inputs: session.run(None, inputs | feeds), cross_kv, self._torch)


def generate_with_cache(runner, pixels: np.ndarray, start, max_new_tokens: int, min_new_tokens: int = 0,
                        num_beams: int = 1):
    """decoding.decode over `runner`'s encode + decoder_state (OnnxCaptioner, OpenVinoCaptioner): start ids +
    generated ids (torch int64), as `generate` returns them; the image keys/values are repeated per beam."""
    from .decoding import decode

    cross_kv = runner.encode(pixels)
    if num_beams > 1:
        cross_kv = np.repeat(cross_kv, num_beams, axis=2)
    return decode(lambda rows: runner.decoder_state(cross_kv), start, max_new_tokens=max_new_tokens,
                  eos_token_id=runner.eos, pad_token_id=runner.pad, min_new_tokens=min_new_tokens,
                  num_beams=num_beams)


class KVCacheState:
    """decoding.DecoderState over a numpy KV cache: each step appends the new keys/values (a few MB at caption
    lengths). `run(inputs)` runs the decoder graph on input_ids, position_ids, past_mask and past_kv (the image
    keys/values are the runtime's to feed) and returns (logits, new_kv) as numpy arrays it no longer writes to."""

    def __init__(self, run: Callable[[dict], Sequence[np.ndarray]], cross_kv: np.ndarray, torch):
        layers, _, rows, heads, _, head_dim = cross_kv.shape
        self.run, self.torch = run, torch
        self.cross_kv = cross_kv  # kept alive while a runtime reads views of it
        self.past = np.zeros((layers, 2, rows, heads, 0, head_dim), np.float32)

    def step(self, input_ids):
        ids = input_ids.numpy().astype(np.int64)
        rows, new = ids.shape
        cached = self.past.shape[4]
        logits, new_kv = self.run({
            "input_ids": ids,
            "position_ids": np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (rows, new)).copy(),
            "past_mask": np.ones((rows, cached), np.int64),
            "past_kv": self.past,
        })
        self.past = np.concatenate([self.past, new_kv], axis=4)
        return self.torch.from_numpy(logits)

    def reorder(self, rows) -> None:
        self.past = np.ascontiguousarray(self.past[:, :, rows.numpy()])


def session_options(ort, threads: int = 0):
    """The SessionOptions of every ONNX Runtime session of the project (this backend and blip-export's checks);
    `threads` intra-op threads, 0 = onnxruntime's choice."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # ORT's worker threads busy-wait by default, which slows torch (and the node) 3x in the same process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _providers(ort, config: CaptionerConfig) -> tuple[list, str]:
    """Execution providers for config.device, and a reason the precision cannot be honoured (or "")."""
    if config.device == "cpu":
        if config.precision not in ("fp32", "int8"):
            return [], (f"precision {config.precision!r}: the onnxruntime backend runs the exported fp32 graphs on "
                        "the CPU, or with precision int8 the int8 export (or the torch/openvino backends for bf16)")
        return ["CPUExecutionProvider"], ""
    device_id = config.device_index
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
