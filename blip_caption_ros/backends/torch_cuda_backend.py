"""The torch-cuda backend: PyTorch on the GPU with a static KV cache and CUDA graphs, for vehicles without TensorRT.

Same checkpoint as the torch backend (a save_pretrained directory), fp16/bf16/fp32. Per caption: the vision tower and
the cross-attention keys/values run once (eager), the prompt fills a preallocated cache, and every further token is
one replay of a CUDA graph captured per batch size: inputs are copied into static tensors, the graph runs the decoder
over the whole masked cache and writes the new keys/values into their slot on the device. The host sees only whether
every row has finished.

`StaticCacheGenerator` is the device-independent core (no graphs on the CPU), so its decoding is tested against
`generate` on any machine; the CUDA graphs themselves are exercised by tests that run only where CUDA is present and
by `scripts/verify_gpu_backends.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import CaptionerConfig, ModelLoadError
from .static_kv import MAX_PROMPT_TOKENS, StaticKVState


class StaticCacheGenerator:
    """Greedy/beam decoding of a BlipForConditionalGeneration with preallocated buffers (and CUDA graphs on CUDA)."""

    def __init__(self, model, max_rows: int = 8, max_prompt_tokens: int = MAX_PROMPT_TOKENS,
                 max_new_tokens: int = 20, cuda_graphs: bool | None = None):
        import torch

        from .kv_decoder import KVDecoder, VisionCrossKV, cache_shape

        self.torch, self.model = torch, model
        self.vision, self.decoder = VisionCrossKV(model).eval(), KVDecoder(model).eval()
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a model on a CUDA device")
        text = model.config.text_config
        self.bos, self.eos, self.pad = text.bos_token_id, text.sep_token_id, text.pad_token_id
        self.max_rows, self.max_prompt = max_rows, max_prompt_tokens
        self.cache_len = max_prompt_tokens + max_new_tokens
        self._cache_shape = lambda rows: cache_shape(model, rows, self.cache_len)
        self._rows = {}  # rows -> per-batch-size static tensors (and captured graph)

    def _static(self, rows: int) -> dict:
        if rows not in self._rows:
            torch = self.torch
            self._rows[rows] = {
                "cache": torch.zeros(self._cache_shape(rows), dtype=self.dtype, device=self.device),
                "mask": torch.zeros(rows, self.cache_len, dtype=torch.long, device=self.device),
                "ids": torch.zeros(rows, 1, dtype=torch.long, device=self.device),
                "positions": torch.zeros(rows, 1, dtype=torch.long, device=self.device),
                "slot": torch.zeros(1, dtype=torch.long, device=self.device),
                "cross": None, "graph": None, "logits": None,
            }
        return self._rows[rows]

    def _step_body(self, static: dict):
        """The decoder on one token per row; writes the token's keys/values into cache slot `slot`."""
        logits, new_kv = self.decoder(static["ids"], static["positions"], static["mask"], static["cache"],
                                      static["cross"])
        static["cache"].index_copy_(4, static["slot"], new_kv)
        static["mask"].index_fill_(1, static["slot"], 1)
        return logits

    def _capture(self, static: dict) -> None:
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (allocations, cuBLAS handles)
                self._step_body(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static["logits"] = self._step_body(static)
        static["graph"] = graph

    def generate_ids(self, pixel_values, start, max_new_tokens: int, min_new_tokens: int = 0, num_beams: int = 1):
        """Start ids + generated ids (a torch int64 tensor on the CPU); `pixel_values` (numpy or torch) [images, 3,
        size, size], `start` (numpy or torch) [images, start]."""
        from .decoding import decode

        torch = self.torch
        rows = pixel_values.shape[0] * num_beams
        if rows > self.max_rows or start.shape[1] > self.max_prompt or \
                start.shape[1] + max_new_tokens > self.cache_len:
            raise ValueError(f"{rows} rows / {start.shape[1]} prompt tokens / {max_new_tokens} new tokens exceed the "
                             f"preallocated {self.max_rows} rows / {self.max_prompt} / cache {self.cache_len}")
        with torch.inference_mode():
            cross = self.vision(torch.as_tensor(pixel_values).to(self.device, self.dtype))
            if num_beams > 1:
                cross = cross.repeat_interleave(num_beams, dim=2)
            static = self._static(rows)
            if static["cross"] is None:
                static["cross"] = torch.empty_like(cross)
            static["cross"].copy_(cross)
            return torch.from_numpy(decode(
                lambda n: self._state(static), np.asarray(start), max_new_tokens=max_new_tokens, eos_token_id=self.eos,
                pad_token_id=self.pad, min_new_tokens=min_new_tokens, num_beams=num_beams))

    def _state(self, static: dict) -> StaticKVState:
        def run(input_ids, positions):
            return self.decoder(input_ids, positions, static["mask"], static["cache"], static["cross"])

        def replay(input_ids, slot):
            static["ids"].copy_(input_ids)
            static["positions"].fill_(slot)
            static["slot"].fill_(slot)
            if static["graph"] is None:
                self._capture(static)
                static["mask"][:, slot] = 0  # capture's warm-up wrote this slot; replay writes it again
            static["graph"].replay()
            return static["logits"]

        return StaticKVState(static["cache"], static["mask"], run, replay if self.cuda_graphs else None)


class TorchCudaCaptioner:
    backend = "torch-cuda"

    def __init__(self, config: CaptionerConfig, max_rows: int = 8):
        from .torch_backend import load_model_on_device, model_settings

        if not config.device.startswith("cuda"):
            raise ModelLoadError(config.model, f"the torch-cuda backend runs on cuda[:N], not {config.device!r} "
                                 "(use backend torch or onnxruntime on the CPU)")
        model, self.processor = load_model_on_device(config, self.backend)
        self.settings = model_settings(config)
        self.config, self.model_name = config.filled_from(self.settings), config.model
        config = self.config
        self.generator = StaticCacheGenerator(model, max_rows=max_rows * max(1, config.num_beams),
                                              max_new_tokens=config.max_new_tokens)

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        from .decoding import caption_images

        return caption_images(self.generator.generate_ids, self.processor, self.config, self.generator.bos, images,
                              prompt)
