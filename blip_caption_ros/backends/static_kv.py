"""The static KV cache of the GPU backends (torch-cuda, TensorRT): its default limits and its decoder state.

Both preallocate the cache [layers, 2, rows, heads, cache_length, head_dim] and a mask [rows, cache_length] once; the
decoder always sees the whole cache with the filled slots masked in, so its shapes are fixed after the prompt, and
each step writes the new tokens' keys/values into their slots on the device. Only how the decoder runs differs (a torch
module, a CUDA graph replay, a TensorRT engine), so that is what a backend passes in.
"""

from __future__ import annotations

MAX_BATCH = 6
"""Rows (cameras x beams) a TensorRT engine's optimisation profile accepts unless blip-export --max-batch says more."""
MAX_PROMPT_TOKENS = 16
"""Longest start ([bos] + prompt tokens) the cache reserves slots for (blip-export --max-prompt-tokens, torch-cuda)."""


class StaticKVState:
    """decoding.DecoderState over a preallocated cache and mask.

    `run(input_ids, positions) -> (logits, new_kv)` runs the decoder on the new tokens over the whole masked cache.
    `replay(input_ids, slot) -> logits`, when given, runs one-token steps instead and writes slot `slot` of the cache
    and mask itself (torch-cuda's CUDA graph). The decoding loop speaks numpy: ids and beam rows arrive as numpy
    arrays and go to the cache's device, logits leave as a float32 numpy copy (the next step overwrites the backend's
    output buffer).
    """

    def __init__(self, cache, mask, run, replay=None):
        import torch

        self.torch, self.cache, self.mask, self.run, self.replay = torch, cache, mask, run, replay
        self.filled = 0
        mask.zero_()

    def step(self, input_ids):
        input_ids = self.torch.as_tensor(input_ids).to(self.cache.device)
        new = input_ids.shape[1]
        if new == 1 and self.replay is not None:
            logits = self.replay(input_ids, self.filled)
        else:
            positions = self.torch.arange(self.filled, self.filled + new, device=input_ids.device)
            logits, new_kv = self.run(input_ids, positions.expand(input_ids.shape[0], new))
            self.cache[:, :, :, :, self.filled: self.filled + new].copy_(new_kv)
            self.mask[:, self.filled: self.filled + new] = 1
        self.filled += new
        return logits.to(self.torch.float32).cpu().numpy().copy()

    def reorder(self, rows) -> None:
        self.cache.copy_(self.cache.index_select(2, self.torch.as_tensor(rows).to(self.cache.device)))
