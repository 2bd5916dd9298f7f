"""Which training item each step draws: caption sources by `--bddx_ratio`, rare attribute combinations lifted.

`--balance_attributes` draws frames with weight inverse to the frequency of their (weather, time of day, scene)
combination, capped at `--balance_cap` times the weight of the most common one. Draws are a pure function of
(seed, epoch), like EpochSampler's order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from blip_train.config import DataConfig
from blip_train.data import CaptionSplit, EpochSampler, WeightedEpochSampler
from blip_train.datasets.records import FrameRecord

BALANCE_KEYS = ("weather", "timeofday", "scene")


def combination(frame: FrameRecord) -> tuple[str, ...]:
    return tuple(getattr(frame, key) for key in BALANCE_KEYS)


def balance_weights(frames: Sequence[FrameRecord], cap: float) -> list[float]:
    """Per frame: (count of the most common combination / count of its own), at most `cap`."""
    counts = Counter(combination(frame) for frame in frames)
    top = max(counts.values(), default=1)
    return [min(top / counts[combination(frame)], cap) for frame in frames]


def sampling_weights(split: CaptionSplit, data: DataConfig) -> list[float] | None:
    """Draw probabilities of the training items, or None for a plain shuffle (one source, no balancing).

    Balancing is done within each caption source; the sources then get `bddx_ratio` and 1 - `bddx_ratio` of the
    probability mass, so the expected share of BDD-X draws is exactly the ratio whatever the balancing does.
    """
    sources = split.sources or ["labels"] * len(split)
    groups = sorted(set(sources))
    if not data.balance_attributes and len(groups) == 1:
        return None
    share = {"labels": 1.0 - data.bddx_ratio, "bddx": data.bddx_ratio} if len(groups) > 1 else {groups[0]: 1.0}
    weights = [0.0] * len(split)
    for group in groups:
        members = [i for i, source in enumerate(sources) if source == group]
        base = (balance_weights([split.frames[i] for i in members], data.balance_cap) if data.balance_attributes
                else [1.0] * len(members))
        total = sum(base)
        for i, weight in zip(members, base, strict=True):
            weights[i] = share[group] * weight / total
    return weights


def describe_sampling(split: CaptionSplit, weights: Sequence[float] | None, data: DataConfig,
                      rarest: int = 4) -> list[str]:
    """What the sampler does, for the training log: source shares and how rare combinations are lifted."""
    if weights is None:
        return []
    lines = []
    if split.sources and len(set(split.sources)) > 1:
        bddx = sum(w for w, s in zip(weights, split.sources, strict=True) if s == "bddx")
        lines.append(f"sampling: BDD-X sentences {bddx:.0%} of draws ({split.sources.count('bddx')} of {len(split)} "
                     "items)")
    if data.balance_attributes:
        frames_of: Counter = Counter()
        draws_of: Counter = Counter()
        for frame, weight in zip(split.frames, weights, strict=True):
            frames_of[combination(frame)] += 1
            draws_of[combination(frame)] += weight
        total = sum(weights)
        shown = sorted(frames_of, key=lambda combo: (frames_of[combo], combo))[:rarest]
        lifted = "; ".join(f"({', '.join(combo)}) {frames_of[combo] / len(split):.1%} -> {draws_of[combo] / total:.1%}"
                           for combo in shown)
        lines.append(f"sampling: {len(frames_of)} weather/time/scene combinations balanced (cap {data.balance_cap:g});"
                     f" rarest, share of frames -> of draws: {lifted}")
    return lines


def training_sampler(split: CaptionSplit, data: DataConfig, seed: int) -> tuple[EpochSampler, list[str]]:
    """The sampler of the training loader and the lines describing it."""
    weights = sampling_weights(split, data)
    if weights is None:
        return EpochSampler(len(split), seed), []
    return WeightedEpochSampler(weights, seed), describe_sampling(split, weights, data)
