"""Greedy and beam-search decoding over an explicit KV cache, shared by the ONNX Runtime, TensorRT and torch-cuda
backends, their one `caption()` (`caption_images`), and the one function that turns generated ids into the published
caption (`captions_from_ids`, used by every backend and by blip-eval).

A backend supplies a `DecoderState`: `step(input_ids)` runs the decoder on the new tokens of every row (the whole
prompt on the first call, one token afterwards), keeps their keys/values and returns the last position's logits;
`reorder(rows)` permutes the cache rows for beam search. The loops here only pick tokens, so each backend's cache stays
where it lives (numpy for ONNX Runtime, preallocated CUDA buffers for the GPU backends); per token the host learns
only whether every row has finished.

Greedy follows `GenerationMixin` greedy search exactly (first maximal id, pad after the eos), which is what makes the
exact backends' ids identical to `generate`. Beam search follows the classic beam-hypotheses algorithm (length
penalty 1, stop when no running beam can beat the finished ones); it is not promised to match transformers'
vectorised beam search token for token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import torch

from .pixels import model_pixels


class DecoderState(Protocol):
    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [rows, vocab] of the last new position; the new tokens' keys/values join the cache."""
        ...

    def reorder(self, rows: torch.Tensor) -> None:
        """Row i of the cache becomes old row rows[i] (beam search)."""
        ...


@dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int = 20
    eos_token_id: int = 102
    pad_token_id: int = 0
    min_new_tokens: int = 0
    """eos is forbidden before this many new tokens (benchmarks force a fixed caption length with it)."""
    num_beams: int = 1


def decode(state_factory, prompt_ids: torch.Tensor, *, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
           min_new_tokens: int = 0, num_beams: int = 1) -> torch.Tensor:
    """prompt + generated ids [batch, prompt + new], pad after eos, as `generate` returns them.

    `state_factory(rows)` builds a fresh DecoderState for `rows` = batch * num_beams cache rows (the backend repeats
    the image's cross keys/values per beam).
    """
    settings = DecodeSettings(max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                              min_new_tokens=min_new_tokens, num_beams=num_beams)
    if settings.num_beams == 1:
        return greedy(state_factory(prompt_ids.shape[0]), prompt_ids, settings)
    return beam_search(state_factory(prompt_ids.shape[0] * settings.num_beams), prompt_ids, settings)


def greedy(state: DecoderState, prompt_ids: torch.Tensor, settings: DecodeSettings) -> torch.Tensor:
    ids = prompt_ids
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    step_input = ids
    for new in range(settings.max_new_tokens):
        logits = state.step(step_input)
        if new < settings.min_new_tokens:
            logits[:, settings.eos_token_id] = float("-inf")
        tokens = torch.argmax(logits, dim=-1).to(ids.device)
        tokens = torch.where(unfinished, tokens, torch.full_like(tokens, settings.pad_token_id))
        ids = torch.cat([ids, tokens[:, None]], dim=1)
        unfinished &= tokens != settings.eos_token_id
        if not bool(unfinished.any()):  # the one host sync per token
            break
        step_input = tokens[:, None]
    return ids


def beam_search(state: DecoderState, prompt_ids: torch.Tensor, settings: DecodeSettings) -> torch.Tensor:
    batch, beams = prompt_ids.shape[0], settings.num_beams
    device = prompt_ids.device
    ids = prompt_ids.repeat_interleave(beams, dim=0)
    scores = torch.zeros(batch, beams, device=device)
    scores[:, 1:] = -1e9  # all beams start identical: only the first may expand at step one
    finished: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(batch)]
    done = [False] * batch
    step_input = ids
    for new in range(settings.max_new_tokens):
        logits = state.step(step_input).float().to(device)
        logprobs = torch.log_softmax(logits, dim=-1)
        if new < settings.min_new_tokens:
            logprobs[:, settings.eos_token_id] = float("-inf")
        vocab = logprobs.shape[-1]
        candidates = (logprobs + scores.view(-1, 1)).view(batch, beams * vocab)
        top_scores, top_index = torch.topk(candidates, 2 * beams, dim=1)
        top_beam, top_token = top_index // vocab, top_index % vocab
        rows, tokens, kept = [], [], []
        for b in range(batch):
            chosen = []
            if not done[b]:
                for rank in range(2 * beams):
                    row = b * beams + int(top_beam[b, rank])
                    token, score = int(top_token[b, rank]), float(top_scores[b, rank])
                    if token == settings.eos_token_id:
                        if rank < beams:
                            _add(finished[b], beams, torch.cat([ids[row], ids.new_tensor([token])]), score / (new + 1))
                    else:
                        chosen.append((row, token, score))
                    if len(chosen) == beams:
                        break
                best_running = max(score for _, _, score in chosen) / (new + 1) if chosen else float("-inf")
                done[b] = len(finished[b]) == beams and min(s for s, _ in finished[b]) >= best_running
            if done[b] or not chosen:
                done[b] = True
                chosen = [(b * beams, settings.pad_token_id, float("-inf"))] * beams
            for row, token, score in chosen:
                rows.append(row)
                tokens.append(token)
                kept.append(score)
        if all(done):
            break
        rows_t = torch.tensor(rows, device=device)
        tokens_t = torch.tensor(tokens, device=device)
        state.reorder(rows_t)
        ids = torch.cat([ids[rows_t], tokens_t[:, None]], dim=1)
        scores = torch.tensor(kept, device=device).view(batch, beams)
        step_input = tokens_t[:, None]
    else:
        for b in range(batch):
            for k in range(beams):
                if not done[b]:
                    _add(finished[b], beams, ids[b * beams + k], float(scores[b, k]) / settings.max_new_tokens)
    best = [max(hyps, key=lambda h: h[0])[1] for hyps in finished]
    width = max(len(seq) for seq in best)
    out = torch.full((batch, width), settings.pad_token_id, dtype=prompt_ids.dtype, device=device)
    for b, seq in enumerate(best):
        out[b, : len(seq)] = seq
    return out


def _add(hyps: list, beams: int, sequence: torch.Tensor, score: float) -> None:
    hyps.append((score, sequence))
    if len(hyps) > beams:
        hyps.remove(min(hyps, key=lambda h: h[0]))


def caption_images(generate_ids, processor, config, bos_token_id: int, images, prompt: str | None = None) -> list[str]:
    """`Captioner.caption` of the backends that decode with `decode` (ONNX Runtime, TensorRT, torch-cuda).

    The images' pixels (pixels.model_pixels, numpy float32) and [bos] + prompt go to the backend's
    `generate_ids(pixels, start, max_new_tokens, num_beams=...)`; its ids become the published text. `config` is the
    backend's CaptionerConfig: its prompt (unless `prompt` overrides it), max_new_tokens and num_beams.
    """
    if not images:
        return []
    prompt = config.prompt if prompt is None else prompt
    start = start_ids(processor.tokenizer, prompt, bos_token_id, len(images))
    ids = generate_ids(model_pixels(processor, images), start, config.max_new_tokens, num_beams=config.num_beams)
    return captions_from_ids(processor.tokenizer, ids.cpu(), prompt)


def start_ids(tokenizer, prompt: str, bos_token_id: int, batch: int) -> torch.Tensor:
    """The decoder's first input as BLIP's `generate` builds it: [bos] + the prompt's tokens, without [SEP]."""
    if not prompt.strip():
        return torch.full((batch, 1), bos_token_id, dtype=torch.long)
    ids = tokenizer(prompt, return_tensors="pt").input_ids[:, :-1].clone()
    ids[:, 0] = bos_token_id
    return ids.repeat(batch, 1)


def prompt_tokens(tokenizer, prompt: str) -> int:
    """How many ids every backend's output starts with before the caption: bos plus the prompt's words."""
    return max(1, len(tokenizer(prompt).input_ids) - 1) if prompt.strip() else 1


def captions_from_ids(tokenizer, ids: torch.Tensor, prompt: str) -> list[str]:
    """THE published text of generated ids [batch, start + new], for every backend and for blip-eval.

    The start ids (bos + prompt) are cut off by position, not by matching text, then the WordPiece text is tidied
    (`tidy_caption`), so the string a vehicle publishes is the string evaluation scores.
    """
    texts = tokenizer.batch_decode(ids[:, prompt_tokens(tokenizer, prompt):], skip_special_tokens=True)
    return [tidy_caption(text) for text in texts]


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_SPACED_HYPHEN = re.compile(r"\s*-\s*")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")
_LONE_I = re.compile(r"\bi\b")


def tidy_caption(text: str) -> str:
    """Write WordPiece output as the training captions read: "two cars , one ahead . i see" -> "Two cars, one ahead.
    I see" (no space before punctuation, joined hyphens, capitalised sentence starts and "I").

    By hand because the tokenizer's `clean_up_tokenization_spaces` only joins a few English contractions and
    leaves " ;", " :" and lower-case sentence starts (an uncased vocabulary cannot give them back).
    """
    text = _SPACED_HYPHEN.sub("-", _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split())))
    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)
    return _LONE_I.sub("I", text)
