"""What every runtime of a blip-export directory shares (ONNX Runtime, OpenVINO): opening a verified export, the
graphs' names, the image keys/values fed to the decoder, the numpy KV cache and the generate loop.

`ExportCaptioner` is the small base of the onnxruntime and openvino backends: a subclass opens its runtime on the
`OpenedExport` and supplies `encode(pixels) -> cross_kv` and `decoder_state(cross_kv) -> KVCacheState`; `caption` and
`generate_ids` are the base's. Nothing here imports torch or transformers (the processor is export_processor's), so a
CPU vehicle runs an export with numpy, tokenizers and its runtime only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import CaptionerConfig, ModelLoadError
from .caption_settings import CaptionSettings, CaptionSettingsError, model_caption_settings
from .decoding import caption_images, decode
from .engine_manifest import ManifestError, load_export_manifest

#: Input and output names of the exported graphs; the runtimes bind tensors by these names.
VISION_INPUTS = ("pixel_values",)
VISION_OUTPUTS = ("cross_kv",)
DECODER_INPUTS = ("input_ids", "position_ids", "past_mask", "past_kv", "cross_kv")
DECODER_OUTPUTS = ("logits", "new_kv")
#: The ONNX Runtime flavour of the decoder (`decoder.split.onnx`, derived from decoder.onnx at export): the same graph
#: with cross_kv replaced by one [B, heads, N, head_dim] input per layer and key/value, so a runtime can feed views of
#: the vision output instead of the graph slicing (copying) all layers' cross keys/values on every token.
SPLIT_DECODER = "decoder_split"


def split_decoder_inputs(layers: int) -> tuple[str, ...]:
    """Input names of the split-cross decoder: DECODER_INPUTS without cross_kv, then cross_k_0, cross_v_0, ..."""
    return (*DECODER_INPUTS[:-1], *(f"cross_{kind}_{layer}" for layer in range(layers) for kind in "kv"))


@dataclass(frozen=True)
class OpenedExport:
    """A verified blip-export directory: where its graphs are, its manifest, processor, caption settings and token
    ids."""

    directory: Path
    manifest: dict
    processor: object
    settings: CaptionSettings
    """What the export records (caption_prompt.json, generation_config.json), read once after verification."""
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
    when `verify`), then its processor and caption settings read; ModelLoadError with a one-line reason otherwise."""
    from .export_processor import load_export_processor
    from .model_source import ModelFilesError

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
        processor = load_export_processor(directory, manifest["processor_files"])
        settings = model_caption_settings(directory)
    except ModelFilesError as exc:  # a broken or missing processor copy
        raise ModelLoadError(config.model, f"processor files: {exc.reason}") from exc
    except CaptionSettingsError as exc:
        raise ModelLoadError(config.model, str(exc)) from exc
    tokens = manifest["tokens"]
    return OpenedExport(directory, manifest, processor, settings, tokens["bos"], tokens["eos"], tokens["pad"])


def decoder_graph(manifest: dict, split_cross: bool = True) -> str:
    """The decoder graph to run: the split-cross one where the export has it (see OnnxCaptioner)."""
    return SPLIT_DECODER if split_cross and SPLIT_DECODER in manifest["graphs"] else "decoder"


def cross_feeds(cross_kv: np.ndarray, split: bool) -> dict[str, np.ndarray]:
    """The decoder's image key/value inputs: one view per layer and key/value (split graph), or cross_kv itself.

    cross_kv[l, k] of a contiguous array is a contiguous view: the runtimes read it without a copy."""
    if not split:
        return {"cross_kv": cross_kv}
    return {f"cross_{kind}_{layer}": cross_kv[layer, index] for layer in range(cross_kv.shape[0])
            for index, kind in enumerate("kv")}


class KVCacheState:
    """decoding.DecoderState over a numpy KV cache: each step appends the new keys/values (a few MB at caption
    lengths). `run(inputs)` runs the decoder graph on input_ids, position_ids, past_mask and past_kv (the image
    keys/values are the runtime's to feed) and returns (logits, new_kv) as numpy arrays it no longer writes to."""

    def __init__(self, run: Callable[[dict], Sequence[np.ndarray]], cross_kv: np.ndarray):
        layers, _, rows, heads, _, head_dim = cross_kv.shape
        self.run = run
        self.cross_kv = cross_kv  # kept alive while a runtime reads views of it
        self.past = np.zeros((layers, 2, rows, heads, 0, head_dim), np.float32)

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(input_ids, np.int64)
        rows, new = ids.shape
        cached = self.past.shape[4]
        logits, new_kv = self.run({
            "input_ids": ids,
            "position_ids": np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (rows, new)).copy(),
            "past_mask": np.ones((rows, cached), np.int64),
            "past_kv": self.past,
        })
        self.past = np.concatenate([self.past, new_kv], axis=4)
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        self.past = np.ascontiguousarray(self.past[:, :, rows])


class ExportCaptioner:
    """The caption and generate loop of a runtime of a blip-export directory (see the module docstring).

    A subclass sets `config` (settings filled from the export), `processor` and the token ids `bos`, `eos`, `pad`
    (`_adopt` does all of that from an OpenedExport) and implements `encode` and `decoder_state`."""

    backend: str
    config: CaptionerConfig
    processor: object
    bos: int
    eos: int
    pad: int

    def _adopt(self, config: CaptionerConfig, export: OpenedExport) -> None:
        self.export, self.manifest, self.processor = export, export.manifest, export.processor
        self.settings = export.settings
        self.config = config.filled_from(export.settings)
        self.model_name = config.model
        self.bos, self.eos, self.pad = export.bos, export.eos, export.pad

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """cross_kv [layers, 2, batch, heads, image tokens, head_dim] of preprocessed images."""
        raise NotImplementedError

    def decoder_state(self, cross_kv: np.ndarray) -> KVCacheState:
        """A fresh KV cache over `encode`'s cross_kv (rows = its batch axis) for decoding.decode."""
        raise NotImplementedError

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        return caption_images(self.generate_ids, self.processor, self.config, self.bos, images, prompt)

    def generate_ids(self, pixels: np.ndarray, start: np.ndarray, max_new_tokens: int, min_new_tokens: int = 0,
                     num_beams: int = 1) -> np.ndarray:
        """Start ids + generated ids (numpy int64), as `generate` returns them; the image keys/values are repeated
        per beam."""
        cross_kv = np.ascontiguousarray(self.encode(pixels), np.float32)
        if num_beams > 1:
            cross_kv = np.repeat(cross_kv, num_beams, axis=2)
        return decode(lambda rows: self.decoder_state(cross_kv), start, max_new_tokens=max_new_tokens,
                      eos_token_id=self.eos, pad_token_id=self.pad, min_new_tokens=min_new_tokens,
                      num_beams=num_beams)
