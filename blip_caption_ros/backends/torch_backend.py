"""The PyTorch backend: HuggingFace `BlipForConditionalGeneration` + `BlipProcessor`.

Loads through `model_loading.load_blip`, so a save_pretrained directory (what blip-train writes) and a cached hub id
both work: safetensors only, a hub id from the local cache only unless `allow_download`. Generation follows
BLIP's convention: the prompt is tokenised as [CLS] prompt [SEP], and `generate` swaps [CLS] for the decoder's bos and
drops the trailing [SEP].
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from . import CaptionerConfig, ModelLoadError, reraise_interrupt
from .caption_settings import CaptionSettings, CaptionSettingsError, model_caption_settings
from .pixels import model_pixels

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def load_model_on_device(config: CaptionerConfig, backend: str):
    """(BlipForConditionalGeneration on config.device in config.precision, eval mode; its processor) for the torch
    backends; any failure is a ModelLoadError line. The source is checked before torch's import (seconds), so a
    missing model or an uncached hub id is reported at once."""
    from .model_source import ModelFilesError, check_hub_reachable, check_local_hub_model

    try:
        check_hub_reachable(config.model) if config.allow_download else check_local_hub_model(config.model)
    except ModelFilesError as exc:
        raise ModelLoadError(config.model, exc.reason) from None
    try:
        import torch
        import transformers

        from .model_loading import load_blip
    except ImportError as exc:
        reraise_interrupt(exc)
        raise ModelLoadError(config.model, f"the {backend} backend needs torch and transformers ({exc})") from exc
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(config.model, f"device {config.device!r} requested but CUDA is not available")
    transformers.utils.logging.disable_progress_bar()
    try:
        model, processor = load_blip(config.model, dtype=getattr(torch, _DTYPES[config.precision]),
                                     allow_download=config.allow_download)
    except ModelFilesError as exc:
        raise ModelLoadError(config.model, exc.reason) from exc
    return model.to(config.device).eval(), processor


def model_settings(config: CaptionerConfig) -> CaptionSettings:
    """What the loaded model records (caption_prompt.json, generation_config.json), read once after loading."""
    try:
        return model_caption_settings(config.model)
    except CaptionSettingsError as exc:
        raise ModelLoadError(config.model, str(exc)) from exc


class TorchCaptioner:
    backend = "torch"

    def __init__(self, config: CaptionerConfig):
        if config.precision == "fp16" and config.device == "cpu":
            raise ModelLoadError(config.model, "fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.model_name = config.model
        self.model, self.processor = load_model_on_device(config, self.backend)
        self.settings = model_settings(config)
        self.config = config.filled_from(self.settings)
        self._dtype = self.model.dtype
        import torch

        self._torch = torch

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        from .decoding import captions_from_ids

        if not images:
            return []
        prompt = self.config.prompt if prompt is None else prompt
        pixels = self._torch.from_numpy(model_pixels(self.processor, images))
        pixels = pixels.to(self.config.device, self._dtype)
        kwargs = {}
        if prompt.strip():
            kwargs["input_ids"] = self._prompt_ids(prompt).to(self.config.device).repeat(len(images), 1)
        with self._torch.inference_mode():
            ids = self.model.generate(
                pixel_values=pixels, max_new_tokens=self.config.max_new_tokens, num_beams=self.config.num_beams,
                **kwargs,
            )
        return captions_from_ids(self.processor.tokenizer, ids, prompt)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one captioner lives as long as the process
    def _prompt_ids(self, prompt: str):
        return self.processor.tokenizer(prompt, return_tensors="pt").input_ids
