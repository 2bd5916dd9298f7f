"""BLIP captioning as two tensor-in/tensor-out modules with an explicit KV cache.

HuggingFace's BLIP keeps its cache in `Cache` objects that neither ONNX nor CUDA graphs can carry, so the export and
the fast GPU path use these two modules instead. They reuse the checkpoint's own submodules (no copied weights) and
do the same arithmetic in the same order as `BlipTextLMHeadModel` (the one change, the score scale applied to the
query, is bit-identical; see KVDecoder), so greedy decoding gives `generate`'s ids
(the graphs' input and output names are blip_export's):

- `VisionCrossKV`: pixel_values [B, 3, H, W] -> cross_kv [L, 2, B, heads, N, head_dim], the image tokens already
  projected to every decoder layer's cross-attention keys and values (computed once per image, not once per token).
- `KVDecoder`: input_ids [B, S], position_ids [B, S], past_mask [B, P] (1 = attend to that cached position),
  past_kv [L, 2, B, heads, P, head_dim], cross_kv -> logits [B, vocab] of the last position and new_kv
  [L, 2, B, heads, S, head_dim], the keys and values of the S new positions only (which attend causally among
  themselves). The caller owns the cache: it concatenates (dynamic cache), or writes new_kv into a preallocated
  buffer and masks the unused slots with past_mask (static cache: fixed shapes for TensorRT and CUDA graphs).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VisionCrossKV(nn.Module):
    """The vision tower followed by every decoder layer's cross-attention key/value projections."""

    def __init__(self, blip):
        super().__init__()
        self.vision_model = blip.vision_model
        text = blip.text_decoder.config
        self.heads = text.num_attention_heads
        self.head_dim = text.hidden_size // text.num_attention_heads
        self.cross = nn.ModuleList(layer.crossattention.self for layer in blip.text_decoder.bert.encoder.layer)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeds = self.vision_model(pixel_values=pixel_values)[0]
        batch, tokens = embeds.shape[0], embeds.shape[1]

        def heads(x):
            return x.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

        return torch.stack([torch.stack([heads(attn.key(embeds)), heads(attn.value(embeds))]) for attn in self.cross])


class KVDecoder(nn.Module):
    """One decoder pass over S new tokens given the cache of P earlier ones; see the module docstring."""

    def __init__(self, blip):
        super().__init__()
        decoder = blip.text_decoder
        self.embeddings = decoder.bert.embeddings
        self.layers = decoder.bert.encoder.layer
        self.head = decoder.cls.predictions
        config = decoder.config
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = math.sqrt(self.head_dim)
        # HF divides the scores by sqrt(head_dim). Where that is a power of two (BLIP-base: 64 -> 8), scaling the
        # query instead is bit-identical (a power-of-two factor is exact in floating point, before or after the sums)
        # and leaves the runtimes nothing to move: OpenVINO otherwise folds the division onto the key side, i.e. it
        # rescales all N image keys of every layer (and the whole self-attention cache) on every token.
        self.query_scale = 1.0 / self.scale if math.log2(self.scale).is_integer() else None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq = x.shape[0], x.shape[1]
        return x.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)

    def _attend(self, query, key, value, bias):
        if self.query_scale is not None:
            scores = torch.matmul(query * self.query_scale, key.transpose(-1, -2))
        else:
            scores = torch.matmul(query, key.transpose(-1, -2)) / self.scale
        if bias is not None:
            scores = scores + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), value)
        context = context.permute(0, 2, 1, 3).contiguous()
        return context.view(context.shape[0], context.shape[1], -1)

    def forward(self, input_ids, position_ids, past_mask, past_kv, cross_kv):
        embed = self.embeddings
        hidden = embed.word_embeddings(input_ids) + embed.position_embeddings(position_ids)
        hidden = embed.LayerNorm(hidden)

        new_len = input_ids.shape[1]
        positions = torch.arange(new_len, device=input_ids.device)
        causal = (positions.unsqueeze(0) <= positions.unsqueeze(1)).unsqueeze(0).unsqueeze(0)  # [1, 1, S, S]
        past_ok = (past_mask > 0)[:, None, None, :].expand(-1, 1, new_len, -1)  # [B, 1, S, P]
        allowed = torch.cat([past_ok, causal.expand(past_ok.shape[0], -1, -1, -1)], dim=-1)
        zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        bias = torch.where(allowed, zero, torch.finfo(hidden.dtype).min)

        new_kv = []
        for index, layer in enumerate(self.layers):
            attn = layer.attention.self
            key, value = self._split(attn.key(hidden)), self._split(attn.value(hidden))
            new_kv.append(torch.stack([key, value]))
            context = self._attend(self._split(attn.query(hidden)), torch.cat([past_kv[index, 0], key], dim=2),
                                   torch.cat([past_kv[index, 1], value], dim=2), bias)
            hidden = layer.attention.output(context, hidden)

            cross = layer.crossattention.self
            context = self._attend(self._split(cross.query(hidden)), cross_kv[index, 0], cross_kv[index, 1], None)
            hidden = layer.crossattention.output(context, hidden)
            hidden = layer.output(layer.intermediate(hidden), hidden)

        logits = self.head(hidden[:, -1, :])
        return logits, torch.stack(new_kv)


def cache_shape(blip, batch: int, length: int) -> tuple[int, ...]:
    """Shape of a past_kv / new_kv tensor of `length` positions for `batch` rows."""
    config = blip.text_decoder.config
    return (config.num_hidden_layers, 2, batch, config.num_attention_heads, length,
            config.hidden_size // config.num_attention_heads)
