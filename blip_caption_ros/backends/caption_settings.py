"""How a model captions, recorded with the model: its prompt and its generation settings.

A blip-train checkpoint (and a blip-export directory, which copies them) holds

    generation_config.json   HF GenerationConfig: max_new_tokens (its longest training caption plus a margin),
                             num_beams; written by save_pretrained, read by transformers as usual
    caption_prompt.json      {"prompt": "a picture of "}: the text the decoder was trained to continue (HF has no
                             place for a captioning prompt, so it is this small file beside the weights)

`model_caption_settings` reads them; what a model does not record falls back to `STOCK`, the defaults documented for
the stock hub model (Salesforce/blip-image-captioning-base). The node, caption-bag, blip-eval and the demo start from
these and log any value a user overrides. JSON only: no transformers import, so the node can read them before it
loads the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

PROMPT_FILE = "caption_prompt.json"
GENERATION_FILE = "generation_config.json"
SETTINGS = ("prompt", "max_new_tokens", "num_beams")


class CaptionSettingsError(ValueError):
    """A model's recorded caption settings are unreadable; the message names the file."""


@dataclass(frozen=True)
class CaptionSettings:
    prompt: str
    max_new_tokens: int
    num_beams: int
    source: str = "defaults"
    """Where the values came from: the model directory, or "defaults" (the stock model's)."""

    def overrides(self, **values) -> list[str]:
        """One phrase per value (None = not given) that differs from this model's, for a log line at start."""
        return [f"{name} {value!r} (the model's: {getattr(self, name)!r})" for name, value in values.items()
                if value is not None and value != getattr(self, name)]


#: The stock hub model records no prompt: these are the node's documented defaults for it.
STOCK = CaptionSettings(prompt="a picture of", max_new_tokens=20, num_beams=1)


def model_caption_settings(model: str | os.PathLike) -> CaptionSettings:
    """The caption settings `model` (a directory; anything else is a hub id) records, STOCK for the rest."""
    directory = Path(os.fspath(model)).expanduser()
    if not directory.is_dir():
        return STOCK
    prompt_file, generation_file = directory / PROMPT_FILE, directory / GENERATION_FILE
    prompt = _read(prompt_file).get("prompt", STOCK.prompt) if prompt_file.is_file() else STOCK.prompt
    generation = _read(generation_file) if generation_file.is_file() else {}
    settings = CaptionSettings(prompt=prompt, max_new_tokens=generation.get("max_new_tokens") or STOCK.max_new_tokens,
                               num_beams=generation.get("num_beams") or STOCK.num_beams, source=str(directory))
    if not isinstance(settings.prompt, str) or not all(
            isinstance(v, int) and v >= 1 for v in (settings.max_new_tokens, settings.num_beams)):
        raise CaptionSettingsError(f"{directory}: {PROMPT_FILE} / {GENERATION_FILE} hold an invalid prompt, "
                                   f"max_new_tokens or num_beams ({settings})")
    return settings


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaptionSettingsError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CaptionSettingsError(f"{path}: not a JSON object")
    return data
