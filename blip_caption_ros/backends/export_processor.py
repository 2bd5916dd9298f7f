"""The processor of a blip-export directory without transformers: its tokenizer through `tokenizers`, its image
settings from the processor JSON.

transformers imports torch with the processor where torch is installed (BlipProcessor pulls in its image utilities,
about 1 s and the whole torch runtime), and a CPU vehicle running onnxruntime or OpenVINO needs neither: the export's
`tokenizer.json` is the fast tokenizer transformers itself runs, and the image processor is four settings
(pixels.ImageSpec). An export without tokenizer.json (none written by blip-export here, but a hand-made one) falls back
to transformers' BlipProcessor (model_loading.load_processor).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import first_line
from .model_source import ModelFilesError

TOKENIZER_FILE = "tokenizer.json"
#: Where the image processor's settings are: transformers 5 nests them in processor_config.json, older versions and
#: the hub models write preprocessor_config.json.
IMAGE_SETTINGS_FILES = ("processor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class Encoding:
    input_ids: list[int]


class ExportTokenizer:
    """The part of a transformers tokenizer the runtimes call: `tokenizer(text).input_ids` and `batch_decode`."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))

    def __call__(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return Encoding(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def batch_decode(self, ids: Iterable[Sequence[int]], skip_special_tokens: bool = True) -> list[str]:
        return self._tokenizer.decode_batch([list(map(int, row)) for row in ids],
                                            skip_special_tokens=skip_special_tokens)


@dataclass(frozen=True)
class ImageSettings:
    """A BlipImageProcessor's settings under its own attribute names (what pixels.ImageSpec.from_processor reads)."""

    size: dict
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @classmethod
    def from_json(cls, data: dict) -> ImageSettings:
        return cls(size=dict(data["size"]), do_rescale=bool(data.get("do_rescale", True)),
                   rescale_factor=float(data.get("rescale_factor", 1 / 255)),
                   do_normalize=bool(data.get("do_normalize", True)),
                   image_mean=tuple(map(float, data["image_mean"])), image_std=tuple(map(float, data["image_std"])))


@dataclass(frozen=True)
class ExportProcessor:
    tokenizer: ExportTokenizer
    image_processor: ImageSettings


def load_export_processor(directory: str | Path, files: Iterable[str]):
    """The processor of an export whose (verified) processor files are `files`: an ExportProcessor when it has a
    tokenizer.json, transformers' BlipProcessor otherwise; ModelFilesError names the file and why."""
    directory, files = Path(directory), set(files)
    if TOKENIZER_FILE not in files:
        from .model_loading import load_processor

        return load_processor(directory)
    try:
        tokenizer = ExportTokenizer(directory / TOKENIZER_FILE)
    except Exception as exc:  # tokenizers raises its own Exception subclass for any unreadable file
        raise ModelFilesError(directory / TOKENIZER_FILE, f"not a tokenizers file ({first_line(exc)})") from exc
    for name in IMAGE_SETTINGS_FILES:
        if name in files:
            path = directory / name
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                return ExportProcessor(tokenizer, ImageSettings.from_json(data.get("image_processor", data)))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ModelFilesError(path, f"no image processor settings ({first_line(exc)})") from exc
    raise ModelFilesError(directory, f"has no image processor settings ({' or '.join(IMAGE_SETTINGS_FILES)})")

