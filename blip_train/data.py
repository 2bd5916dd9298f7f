"""BDD100K (or Cityscapes) split -> (image, caption) pairs the model trains and is scored on.

Frames come from `bdd100k.load_frames` (`cityscapes.load_cityscapes`), captions from `captions.caption_frame`;
`blip_train.splits` loads the splits a DataConfig names, `blip_train.bddx_mixing` adds BDD-X sentences and
`blip_train.balanced_sampling` draws rare attribute combinations more often. Images are decoded with OpenCV and
resized once to the model's input size by blip_caption_ros.backends.pixels (the transform every backend applies to
a camera frame, so evaluation scores what the vehicle publishes), then kept in a uint8 memmap cache keyed by the
file list, the files' sizes and mtimes, and the size. Normalisation (processor mean/std, the same module) happens
per batch in the collator, so the processor never sees 1280x720 frames in the loop.

Missing or undecodable images raise `ImageReadError` naming the file; with `max_bad_image_fraction > 0` they are
skipped, counted and reported instead, up to that share of the split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from blip_caption_ros.backends.decoding import prompt_tokens
from blip_caption_ros.backends.pixels import ImageSpec, resize_rgb
from blip_caption_ros.progress import progress_bar
from blip_train.attribute_filter import describe_only, matches_only
from blip_train.captions import caption_frame
from blip_train.datasets import cityscapes
from blip_train.datasets.bdd100k import find_label_file, image_path, load_frames
from blip_train.datasets.records import FrameRecord, LabelFormatError, LoadReport

CACHE_VERSION = 2


class DataError(ValueError):
    """A dataset problem a user can fix (missing root, bad images); the message names the path."""


class ImageReadError(DataError):
    """An image that is missing or cannot be decoded."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "blip_train"


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 array of shape (height, width, 3), resized from the file at `path`.

    Decoded at full size and resized by pixels.resize_rgb, exactly as the vehicle resizes a camera frame (JPEG's
    reduced-size decoding would be faster for small models but gives other pixels).
    """
    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        if not path.is_file():
            raise ImageReadError(f"{path}: image not found")
        raise ImageReadError(f"{path}: cannot decode image (corrupt, truncated or not an image)")
    return resize_rgb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size)


@dataclass
class ImageSet:
    """Resized images of a list of files: a memmap cache or decoding on demand. Picklable for loader workers."""

    paths: list[Path]
    size: tuple[int, int]
    cache_file: Path | None = None
    _array: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        if self.cache_file is None:
            return read_image(self.paths[index], self.size)
        if self._array is None:
            self._array = np.load(self.cache_file, mmap_mode="r")
        return np.array(self._array[index])

    def __getstate__(self):
        return {**self.__dict__, "_array": None}


@dataclass
class CaptionSplit:
    """The usable frames of one split with their captions and images; skipped frames are listed, not hidden."""

    root: Path
    split: str
    label_file: Path
    frames: list[FrameRecord]
    captions: list[str]
    images: ImageSet
    report: LoadReport
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image path, reason)
    #: Caption source per item ("labels" or "bddx"); empty means every caption comes from the labels.
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def summary(self) -> str:
        text = f"{self.split}: {len(self.frames)} frames from {self.label_file}"
        if self.sources:
            counts = Counter(self.sources)
            text = (f"{self.split}: {len(self.frames)} items ({counts['labels']} label captions, {counts['bddx']} "
                    f"BDD-X sentences) from {self.label_file}")
        if self.skipped:
            text += f", {len(self.skipped)} unreadable images skipped"
        return text


def load_caption_split(
    root: str | Path,
    split: str,
    size: tuple[int, int],
    caption_seed: int = 0,
    max_frames: int | None = None,
    cache_images: bool = True,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    max_bad_image_fraction: float = 0.0,
    progress: bool = False,
    dataset: str = "bdd100k",
    only: Mapping[str, Collection[str]] | None = None,
) -> CaptionSplit:
    """Frames, captions and (cached) images of `split` under a BDD100K (or Cityscapes) root.

    `only` keeps the frames whose attributes take one of the listed values, e.g. {"weather": {"snowy", "foggy"}},
    before `max_frames` is applied.
    """
    root = Path(root)
    frames, report, label_file = _load_records(root, split, dataset)
    to_path = cityscapes.image_path if dataset == "cityscapes" else image_path
    if only:
        frames = select_frames(frames, only, label_file)
    if max_frames is not None:
        frames = frames[:max_frames]
    paths = [to_path(root, split, frame.name) for frame in frames]
    images, bad = prepare_images(paths, size, cache_images=cache_images, cache_dir=cache_dir, workers=workers,
                                 max_bad_fraction=max_bad_image_fraction,
                                 desc=f"caching {split} images", progress=progress)
    if bad:
        bad_indices = {index for index, _ in bad}
        frames = [frame for i, frame in enumerate(frames) if i not in bad_indices]
        images = _subset(images, [i for i in range(len(paths)) if i not in bad_indices])
    captions = [caption_frame(frame, caption_seed) for frame in frames]
    skipped = [(str(paths[index]), reason) for index, reason in bad]
    return CaptionSplit(root, split, label_file, frames, captions, images, report, skipped)


def _load_records(root: Path, split: str, dataset: str) -> tuple[list[FrameRecord], LoadReport, Path]:
    """(frames, report, label file or folder) of a split; DataError naming the path when there are none."""
    cs = dataset == "cityscapes"
    if not root.is_dir():
        expected = f"leftImg8bit/{split}/ and gtFine/{split}/" if cs else f"images/100k/{split}/ and labels/"
        raise DataError(f"{root}: {'Cityscapes' if cs else 'data'} root not found (expected {expected} below it)")
    try:
        if cs:
            label_file = root / "gtFine" / split
            frames, report = cityscapes.load_cityscapes(root, split)
        else:
            label_file = find_label_file(root, split)
            frames, report = load_frames(label_file)
    except LabelFormatError as exc:
        raise DataError(str(exc)) from None
    if not frames:
        raise DataError(f"{label_file}: no *{cityscapes.POLYGON_SUFFIX} files in its city folders" if cs
                        else f"{label_file}: no frames in the label file")
    return frames, report, label_file


def select_frames(frames: Sequence[FrameRecord], only: Mapping[str, Collection[str]],
                  source: str | Path) -> list[FrameRecord]:
    """Frames that match `only` (matches_only); DataError naming `source` when none do."""
    kept = [frame for frame in frames if matches_only(frame, only)]
    if not kept:
        counts = {key: Counter(getattr(frame, key) for frame in frames) for key in only}
        present = "; ".join(f"{key}: " + ", ".join(f"{value} {n}" for value, n in counted.most_common())
                            for key, counted in counts.items())
        raise DataError(f"{source}: no frame matches --only {describe_only(only)} (values there: {present})")
    return kept


def _subset(images: ImageSet, keep: list[int]) -> ImageSet:
    if images.cache_file is None:
        return ImageSet([images.paths[i] for i in keep], images.size)
    return _IndexedImageSet([images.paths[i] for i in keep], images.size, images.cache_file, rows=keep)


@dataclass
class _IndexedImageSet(ImageSet):
    """A cache whose usable rows are a subset (frames with bad images removed)."""

    rows: list[int] = field(default_factory=list)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.cache_file, mmap_mode="r")
        return np.array(self._array[self.rows[index]])


@dataclass
class ImageRows:
    """Items taken from several image sets by (set, row): a split whose captions share images or add new ones."""

    parts: list[ImageSet]
    rows: list[tuple[int, int]]

    @property
    def size(self) -> tuple[int, int]:
        return self.parts[0].size

    @property
    def paths(self) -> list[Path]:
        return [self.parts[part].paths[row] for part, row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> np.ndarray:
        part, row = self.rows[index]
        return self.parts[part][row]


def _cache_key(paths: Sequence[Path], size: tuple[int, int]) -> str:
    digest = hashlib.sha1(f"v{CACHE_VERSION}:{size[0]}x{size[1]}".encode())
    for path in paths:
        try:
            stat = path.stat()
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"\n{path.resolve()}:{stamp}".encode())
    return digest.hexdigest()[:20]


def _check_bad(bad: list[tuple[int, str]], total: int, max_fraction: float) -> None:
    if not bad:
        return
    if max_fraction <= 0.0:
        raise ImageReadError(bad[0][1])
    if len(bad) > max_fraction * total:
        listed = "\n  ".join(reason for _, reason in bad[:5])
        raise ImageReadError(f"{len(bad)} of {total} images are unreadable, more than --max_bad_image_fraction "
                             f"{max_fraction}:\n  {listed}" + ("\n  ..." if len(bad) > 5 else ""))


def prepare_images(
    paths: Sequence[Path],
    size: tuple[int, int],
    cache_images: bool = True,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    max_bad_fraction: float = 0.0,
    desc: str = "caching images",
    progress: bool = False,
) -> tuple[ImageSet, list[tuple[int, str]]]:
    """The images of `paths` at `size`, plus (index, reason) of those that could not be read."""
    paths = [Path(p) for p in paths]
    if not cache_images:  # only missing files can be found up front; a corrupt one fails when first read
        bad = [(i, f"{p}: image not found") for i, p in enumerate(paths) if not p.is_file()]
        _check_bad(bad, len(paths), max_bad_fraction)
        return ImageSet(paths, size), bad
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(paths, size)
    cache_file, index_file = cache_dir / f"images-{key}.npy", cache_dir / f"images-{key}.json"
    if cache_file.is_file() and index_file.is_file():
        bad = [(int(i), reason) for i, reason in json.loads(index_file.read_text(encoding="utf-8"))["bad"]]
        _check_bad(bad, len(paths), max_bad_fraction)
        return ImageSet(paths, size, cache_file), bad
    tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size[0], size[1], 3))
    bad: list[tuple[int, str]] = []

    def load(index: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return index, read_image(paths[index], size), None
        except ImageReadError as exc:
            return index, None, str(exc)

    try:
        with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
            results = pool.map(load, range(len(paths)))
            for index, image, reason in progress_bar(results, total=len(paths), desc=desc, unit="img",
                                                     disable=not progress, mininterval=1.0):
                if image is None:
                    bad.append((index, reason))
                    if max_bad_fraction <= 0.0 or len(bad) > max_bad_fraction * len(paths):
                        _check_bad(bad, len(paths), max_bad_fraction)
                    array[index] = 0
                else:
                    array[index] = image
        array.flush()
        del array
        tmp.replace(cache_file)
        index_file.write_text(json.dumps({"size": list(size), "frames": len(paths), "bad": bad}), encoding="utf-8")
    finally:
        tmp.unlink(missing_ok=True)
    return ImageSet(paths, size, cache_file), bad


# --- batches --------------------------------------------------------------------------------------------------------


class CaptionDataset(torch.utils.data.Dataset):
    """Items: {"image": uint8 HxWx3 tensor, "caption": str, "index": int}."""

    def __init__(self, images: ImageSet, captions: Sequence[str] | None = None):
        if captions is not None and len(captions) != len(images):
            raise ValueError(f"{len(captions)} captions for {len(images)} images")
        self.images = images
        self.captions = captions

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        item = {"image": torch.from_numpy(self.images[index]), "index": index}
        if self.captions is not None:
            item["caption"] = self.captions[index]
        return item


class CaptionCollator:
    """Batches for BlipForConditionalGeneration, the LAVIS way.

    Text is `prompt + caption`; `input_ids[:, 0]` becomes the decoder's bos token ([DEC]); labels copy input_ids
    with padding and prompt tokens set to -100, so the loss covers the caption and its closing [SEP] only.
    """

    def __init__(self, spec: ImageSpec, tokenizer=None, bos_token_id: int | None = None, prompt: str = "",
                 max_length: int = 128, with_text: bool = True):
        self.spec = spec
        self.tokenizer = tokenizer
        self.bos_token_id = bos_token_id
        self.prompt = prompt
        self.max_length = max_length
        self.with_text = with_text
        if with_text:
            if tokenizer is None or bos_token_id is None:
                raise ValueError("a text collator needs the tokenizer and the decoder's bos token id")
            self.prompt_length = prompt_tokens(tokenizer, prompt)
            if self.prompt_length >= max_length:
                raise ValueError(f"the prompt {prompt!r} fills all {max_length} tokens of max_text_length")

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        images = np.stack([item["image"].numpy() for item in items])
        batch = {"pixel_values": torch.from_numpy(self.spec.normalise(images))}
        if not self.with_text:
            batch["index"] = torch.tensor([item["index"] for item in items])
            return batch
        texts = [self.prompt + item["caption"] for item in items]
        tokens = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        input_ids = tokens.input_ids.clone()
        input_ids[:, 0] = self.bos_token_id
        labels = input_ids.masked_fill(input_ids == self.tokenizer.pad_token_id, -100)
        labels[:, :self.prompt_length] = -100
        batch.update(input_ids=input_ids, attention_mask=tokens.attention_mask, labels=labels)
        return batch


class EpochSampler(torch.utils.data.Sampler):
    """A shuffled order that depends only on (seed, epoch), so a resumed run sees the batches it would have seen."""

    def __init__(self, length: int, seed: int, shuffle: bool = True):
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


class WeightedEpochSampler(EpochSampler):
    """`length` draws with replacement, index i with probability weights[i] / sum(weights); the draws depend only
    on (seed, epoch), as EpochSampler's order does, so every DDP process computes the same list and Accelerate's
    batch sharding gives each its own batches of it, and a resumed run skips to where it stopped."""

    def __init__(self, weights: Sequence[float] | torch.Tensor, seed: int, length: int | None = None):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.ndim != 1 or len(weights) == 0 or not bool(torch.isfinite(weights).all()) \
                or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError("sampling weights must be a non-empty list of finite, non-negative numbers, not all 0")
        super().__init__(len(weights) if length is None else length, seed)
        self.weights = weights

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.multinomial(self.weights, self.length, replacement=True, generator=generator).tolist())
