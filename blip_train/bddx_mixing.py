"""BDD-X sentences as training captions (`--caption_source bddx` or `both`), paired with BDD100K frames.

`bddx` trains on BDD-X action + justification sentences instead of the label captions, paired with the BDD100K
still (the video's frame at 10 s) of every segment that covers 10 s, and with `--bddx_videos` also with the frame at
each segment's midpoint, decoded once into the cache; `both` keeps the label captions too (how often each source is
drawn is `blip_train.balanced_sampling`'s business).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2

from blip_train.attribute_filter import matches_only
from blip_train.config import DataConfig
from blip_train.data import CaptionSplit, DataError, ImageRows, default_cache_dir, prepare_images
from blip_train.datasets.bddx import BddxFormatError, BddxVideo, load_bddx, read_video_frames, still_sentences
from blip_train.datasets.records import FrameRecord

VIDEO_SUFFIXES = (".mov", ".mp4")


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
