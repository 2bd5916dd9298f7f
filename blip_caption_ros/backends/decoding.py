"""Greedy and beam-search decoding over an explicit KV cache, shared by the ONNX Runtime, TensorRT and torch-cuda
backends, their one `caption()` (`caption_images`), and the one function that turns generated ids into the published
caption (`captions_from_ids`, used by every backend and by blip-eval).

A backend supplies a `DecoderState`: `step(input_ids)` runs the decoder on the new tokens of every row (the whole
prompt on the first call, one token afterwards), keeps their keys/values and returns the last position's logits;
`reorder(rows)` permutes the cache rows for beam search. The loops here only pick tokens, so each backend's cache stays
where it lives (numpy for ONNX Runtime and OpenVINO, preallocated CUDA buffers for the GPU backends), and the loops
themselves are numpy: ids, logits and beam rows cross as numpy arrays, so the CPU runtimes never import torch (the GPU
states hand over one [rows, vocab] logits copy per token).

Greedy follows `GenerationMixin` greedy search exactly (first maximal id, pad after the eos), which is what makes the
exact backends' ids identical to `generate`. Beam search follows the classic beam-hypotheses algorithm (length
penalty 1, stop when no running beam can beat the finished ones); it is not promised to match transformers'
vectorised beam search token for token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .pixels import model_pixels


class DecoderState(Protocol):
    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Float32 logits [rows, vocab] of the last new position (the caller may write to them); the new tokens'
        keys/values join the cache. `input_ids` int64 [rows, new]."""
        ...

    def reorder(self, rows: np.ndarray) -> None:
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


def decode(state_factory, prompt_ids: np.ndarray, *, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
           min_new_tokens: int = 0, num_beams: int = 1) -> np.ndarray:
    """prompt + generated ids int64 [batch, prompt + new], pad after eos, as `generate` returns them.

    `state_factory(rows)` builds a fresh DecoderState for `rows` = batch * num_beams cache rows (the backend repeats
    the image's cross keys/values per beam).
    """
    prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
    settings = DecodeSettings(max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                              min_new_tokens=min_new_tokens, num_beams=num_beams)
    if settings.num_beams == 1:
        return greedy(state_factory(prompt_ids.shape[0]), prompt_ids, settings)
    return beam_search(state_factory(prompt_ids.shape[0] * settings.num_beams), prompt_ids, settings)


def greedy(state: DecoderState, prompt_ids: np.ndarray, settings: DecodeSettings) -> np.ndarray:
    ids = prompt_ids
    unfinished = np.ones(ids.shape[0], dtype=bool)
    step_input = ids
    for new in range(settings.max_new_tokens):
        logits = state.step(step_input)
        if new < settings.min_new_tokens:
            logits[:, settings.eos_token_id] = -np.inf
        tokens = np.where(unfinished, np.argmax(logits, axis=-1), settings.pad_token_id).astype(np.int64)
        ids = np.concatenate([ids, tokens[:, None]], axis=1)
        unfinished &= tokens != settings.eos_token_id
        if not unfinished.any():
            break
        step_input = tokens[:, None]
    return ids


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) over the last axis, in float32."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def beam_search(state: DecoderState, prompt_ids: np.ndarray, settings: DecodeSettings) -> np.ndarray:
    batch, beams = prompt_ids.shape[0], settings.num_beams
    ids = np.repeat(prompt_ids, beams, axis=0)
    scores = np.zeros((batch, beams), np.float32)
    scores[:, 1:] = -1e9  # all beams start identical: only the first may expand at step one
    finished: list[list[tuple[float, np.ndarray]]] = [[] for _ in range(batch)]
    done = [False] * batch
    step_input = ids
    for new in range(settings.max_new_tokens):
        logprobs = log_softmax(np.asarray(state.step(step_input), np.float32))
        if new < settings.min_new_tokens:
            logprobs[:, settings.eos_token_id] = -np.inf
        vocab = logprobs.shape[-1]
        candidates = (logprobs + scores.reshape(-1, 1)).reshape(batch, beams * vocab)
        # the 2 * beams best candidates per image, best first (ties: the lower index first)
        top_index = np.argsort(-candidates, axis=1, kind="stable")[:, : 2 * beams]
        top_scores = np.take_along_axis(candidates, top_index, axis=1)
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
                            _add(finished[b], beams, np.append(ids[row], token), score / (new + 1))
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
        rows_a = np.asarray(rows, np.int64)
        tokens_a = np.asarray(tokens, np.int64)
        state.reorder(rows_a)
        ids = np.concatenate([ids[rows_a], tokens_a[:, None]], axis=1)
        scores = np.asarray(kept, np.float32).reshape(batch, beams)
        step_input = tokens_a[:, None]
    else:
        for b in range(batch):
            for k in range(beams):
                if not done[b]:
                    _add(finished[b], beams, ids[b * beams + k], float(scores[b, k]) / settings.max_new_tokens)
    best = [max(hyps, key=lambda h: h[0])[1] for hyps in finished]
    out = np.full((batch, max(len(seq) for seq in best)), settings.pad_token_id, dtype=np.int64)
    for b, seq in enumerate(best):
        out[b, : len(seq)] = seq
    return out


def _add(hyps: list, beams: int, sequence: np.ndarray, score: float) -> None:
    hyps.append((score, sequence))
    if len(hyps) > beams:
        hyps.remove(min(hyps, key=lambda h: h[0]))


def caption_images(generate_ids, processor, config, bos_token_id: int, images, prompt: str | None = None) -> list[str]:
    """`Captioner.caption` of the backends that decode with `decode` (ONNX Runtime, OpenVINO, TensorRT, torch-cuda).

    The images' pixels (pixels.model_pixels, numpy float32) and [bos] + prompt go to the backend's
    `generate_ids(pixels, start, max_new_tokens, num_beams=...)`; its ids become the published text. `config` is the
    backend's CaptionerConfig: its prompt (unless `prompt` overrides it), max_new_tokens and num_beams.
    """
    if not images:
        return []
    prompt = config.prompt if prompt is None else prompt
    start = start_ids(processor.tokenizer, prompt, bos_token_id, len(images))
    ids = generate_ids(model_pixels(processor, images), start, config.max_new_tokens, num_beams=config.num_beams)
    return captions_from_ids(processor.tokenizer, ids, prompt)


def start_ids(tokenizer, prompt: str, bos_token_id: int, batch: int) -> np.ndarray:
    """The decoder's first input int64 [batch, start] as BLIP's `generate` builds it: [bos] + the prompt's tokens,
    without [SEP]."""
    ids = np.asarray(tokenizer(prompt).input_ids[: prompt_tokens(tokenizer, prompt)], np.int64)
    ids[0] = bos_token_id
    return np.tile(ids, (batch, 1))


def prompt_tokens(tokenizer, prompt: str) -> int:
    """How many ids every backend's output starts with before the caption: bos plus the prompt's words."""
    return max(1, len(tokenizer(prompt).input_ids) - 1) if prompt.strip() else 1


def captions_from_ids(tokenizer, ids, prompt: str) -> list[str]:
    """THE published text of generated ids [batch, start + new] (numpy or torch), for every backend and blip-eval.

    The start ids (bos + prompt) are cut off by position, not by matching text, then the WordPiece text is tidied
    (`tidy_caption`), so the string a vehicle publishes is the string evaluation scores.
    """
    ids = np.asarray(ids.cpu() if hasattr(ids, "cpu") else ids)
    texts = tokenizer.batch_decode(ids[:, prompt_tokens(tokenizer, prompt):].tolist(), skip_special_tokens=True)
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
