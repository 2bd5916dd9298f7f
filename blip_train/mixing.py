"""Training data beyond one label file: caption sources, the `--only` filter and the attribute-balanced sampler.

- Caption sources (`--caption_source`): `labels` is the caption grammar's sentence for every BDD100K frame; `bddx`
  trains on BDD-X action + justification sentences instead, paired with the BDD100K still (the video's frame at
  10 s) of every segment that covers 10 s, and with `--bddx_videos` also with the frame at each segment's midpoint,
  decoded once into the cache; `both` keeps all of them and draws BDD-X items for `--bddx_ratio` of the samples.
- `--dataset cityscapes` trains on Cityscapes gtFine polygons instead (no weather, no time of day in its captions).
  Validation always uses the BDD100K split under `--data_root`, so runs on any source are scored alike.
- `--only weather=snowy,foggy` keeps matching training frames; `--balance_attributes` draws frames with weight
  inverse to the frequency of their (weather, time of day, scene) combination, capped at `--balance_cap` times the
  weight of the most common one. Draws are a pure function of (seed, epoch), like EpochSampler's order.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2

from blip_train.bdd100k import ATTRIBUTE_VALUES, FrameRecord
from blip_train.bddx import BddxFormatError, BddxVideo, load_bddx, read_video_frames, still_sentences
from blip_train.config import ConfigError, DataConfig
from blip_train.data import (
    CaptionSplit,
    DataError,
    EpochSampler,
    ImageRows,
    WeightedEpochSampler,
    default_cache_dir,
    load_caption_split,
    matches_only,
    prepare_images,
)

BALANCE_KEYS = ("weather", "timeofday", "scene")
VIDEO_SUFFIXES = (".mov", ".mp4")


def parse_only(text: str | None) -> dict[str, frozenset[str]]:
    """`weather=snowy,foggy; timeofday=night` -> {"weather": {"snowy", "foggy"}, "timeofday": {"night"}}.

    A repeated attribute adds values. ValueError naming --only for an unknown attribute or value, or bad syntax.
    """
    out: dict[str, set[str]] = {}
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, values = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--only expects ATTRIBUTE=VALUE[,VALUE...], got {part!r}")
        if key not in ATTRIBUTE_VALUES:
            raise ValueError(f"--only: unknown attribute {key!r} (known: {', '.join(ATTRIBUTE_VALUES)})")
        chosen = {value.strip() for value in values.split(",") if value.strip()}
        if not chosen:
            raise ValueError(f"--only {part!r}: no value given")
        unknown = sorted(chosen - set(ATTRIBUTE_VALUES[key]))
        if unknown:
            raise ValueError(f"--only: unknown {key} value(s) {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(ATTRIBUTE_VALUES[key])})")
        out.setdefault(key, set()).update(chosen)
    return {key: frozenset(values) for key, values in out.items()}


# --- loading --------------------------------------------------------------------------------------------------------


def load_splits(data: DataConfig, size: tuple[int, int], progress: bool = False
                ) -> tuple[CaptionSplit, CaptionSplit, list[str]]:
    """(training split, BDD100K validation split, warnings) as `data` describes them."""
    missing = data.missing_inputs()
    if missing:
        raise ConfigError(missing)
    val = load_val_split(data, size, data.max_val_frames, progress)
    only = parse_only(data.only)
    train_root = data.cityscapes_root if data.dataset == "cityscapes" else data.data_root
    train = load_caption_split(train_root, data.train_split, size, caption_seed=data.caption_seed,
                               max_frames=data.max_train_frames, cache_images=data.cache_images,
                               cache_dir=data.cache_dir, workers=data.num_workers,
                               max_bad_image_fraction=data.max_bad_image_fraction, progress=progress,
                               dataset=data.dataset, only=only)
    notes: list[str] = []
    if data.caption_source != "labels":
        # A video whose still is a validation frame must not be trained on, at any time in it.
        val_videos = {Path(frame.name).stem for frame in val.frames}
        train, notes = add_bddx(train, data, only, val_videos, size, progress)
    return train, val, notes


def load_val_split(data: DataConfig, size: tuple[int, int], max_frames: int | None = None,
                   progress: bool = False) -> CaptionSplit:
    """The BDD100K validation split `data` names, at `size`: what training, blip-eval and blip-compare score on."""
    return load_caption_split(data.data_root, data.val_split, size, caption_seed=data.caption_seed,
                              max_frames=max_frames, cache_images=data.cache_images, cache_dir=data.cache_dir,
                              workers=data.num_workers, max_bad_image_fraction=data.max_bad_image_fraction,
                              progress=progress)


def add_bddx(train: CaptionSplit, data: DataConfig, only: Mapping[str, frozenset[str]], exclude_videos: set[str],
             size: tuple[int, int], progress: bool = False) -> tuple[CaptionSplit, list[str]]:
    """`train` with BDD-X sentences as captions (`bddx`) or added to its label captions (`both`)."""
    csv_path = Path(data.bddx_csv)
    try:
        videos, report = load_bddx(csv_path)
    except BddxFormatError as exc:
        raise DataError(str(exc)) from None
    notes = report.warnings()
    row_of = {frame.name: row for row, frame in enumerate(train.frames)}
    rows: list[tuple[int, int]] = []
    records: list[FrameRecord] = []
    sentences: list[str] = []
    for name, texts in still_sentences(videos).items():
        row = row_of.get(name)
        if row is not None:
            rows += [(0, row)] * len(texts)
            records += [train.frames[row]] * len(texts)
            sentences += texts
    parts = [train.images]
    skipped = list(train.skipped)
    if data.bddx_videos:
        by_video = {Path(frame.name).stem: frame for frame in train.frames}
        images, items, video_notes, bad = _video_frames(videos, Path(data.bddx_videos), exclude_videos, by_video,
                                                        only, data, size, progress)
        notes += video_notes
        skipped += bad
        if items:
            parts.append(images)
            for row, record, sentence in items:
                rows.append((1, row))
                records.append(record)
                sentences.append(sentence)
    if not rows:
        where = f"the {len(train)} training frames of {train.label_file}"
        extra = "" if data.bddx_videos else "; pass --bddx_videos DIR to use the frames of its other segments"
        raise DataError(f"{csv_path}: none of its {len(videos)} videos has a segment covering 10 s whose still is "
                        f"among {where}{extra}")
    if data.caption_source == "both":
        rows = [(0, row) for row in range(len(train))] + rows
        records = list(train.frames) + records
        sentences = list(train.captions) + sentences
        sources = ["labels"] * len(train) + ["bddx"] * (len(rows) - len(train))
    else:
        sources = ["bddx"] * len(rows)
    label_file = f"{train.label_file} + {csv_path}"
    return dataclasses.replace(train, label_file=label_file, frames=records, captions=sentences,
                               images=ImageRows(parts, rows), skipped=skipped, sources=sources), notes


def _video_file(folder: Path, video: str) -> Path | None:
    return next((folder / f"{video}{suffix}" for suffix in VIDEO_SUFFIXES if (folder / f"{video}{suffix}").is_file()),
                None)


def _video_frames(videos: Sequence[BddxVideo], folder: Path, exclude: set[str], by_video: Mapping[str, FrameRecord],
                  only: Mapping[str, frozenset[str]], data: DataConfig, size: tuple[int, int], progress: bool):
    """Frames at each segment's midpoint, decoded once to JPEG under the cache; (images, items, notes, skipped)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: --bddx_videos folder not found")
    out_dir = Path(data.cache_dir or default_cache_dir()) / "bddx_frames"
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    paths, items, skipped = [], [], []
    for video in videos:
        if video.video in exclude:
            counts["in the validation split"] += 1
            continue
        file = _video_file(folder, video.video)
        if file is None:
            counts["no video file"] += 1
            continue
        still = by_video.get(video.video)
        # The still's weather, time and scene hold for its whole 40 s video; its boxes do not.
        record = (dataclasses.replace(still, boxes=(), has_object_labels=False) if still is not None
                  else FrameRecord(name=f"{video.video}.jpg", has_object_labels=False))
        if only and not matches_only(record, only):
            counts["not matching --only"] += 1
            continue
        targets = [out_dir / f"{video.video}_{round(s.midpoint_s * 1000):05d}ms.jpg" for s in video.segments]
        todo = [(s.midpoint_s, path) for s, path in zip(video.segments, targets, strict=True) if not path.is_file()]
        if todo:
            try:
                decoded = read_video_frames(file, [t for t, _ in todo])
            except BddxFormatError as exc:
                skipped.append((str(file), str(exc)))
                continue
            for (_, path), rgb in zip(todo, decoded, strict=True):
                if rgb is not None:
                    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        for segment, path in zip(video.segments, targets, strict=True):
            if path.is_file():
                items.append((len(paths), dataclasses.replace(record, name=path.name), segment.sentence))
                paths.append(path)
            else:
                skipped.append((str(file), f"no frame at {segment.midpoint_s:g} s (past the end of the video)"))
    notes = [f"{folder}: BDD-X videos left out: " + ", ".join(f"{why} ({n})" for why, n in counts.most_common())
             ] if counts else []
    if not paths:
        return None, [], notes, skipped
    images, bad = prepare_images(paths, size, cache_images=data.cache_images, cache_dir=data.cache_dir,
                                 workers=data.num_workers, max_bad_fraction=data.max_bad_image_fraction,
                                 desc="caching BDD-X video frames", progress=progress)
    bad_rows = {row for row, _ in bad}
    skipped += [(str(paths[row]), reason) for row, reason in bad]
    return images, [item for item in items if item[0] not in bad_rows], notes, skipped


# --- sampling -------------------------------------------------------------------------------------------------------


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
