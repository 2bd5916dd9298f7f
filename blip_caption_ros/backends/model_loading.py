"""The one way BLIP weights and processors are loaded: safetensors only, nothing fetched for a local path.

Model directories and hub repos are untrusted input. So:

- Weights load from safetensors only (`use_safetensors=True`): a pickle (`pytorch_model.bin`) runs code when read.
  A directory that holds only pickle weights is refused with a message that says how to convert it.
- An existing directory loads with `local_files_only=True`: no hub lookup, no connection, whatever HF_HUB_OFFLINE says.
- A missing path (absolute, `./`, `../`, `~`, or with more than one `/`) is reported as not found; only a bare
  `name` or `org/name` that is not a local directory is treated as a hub id.
- A hub id is looked up in the local HF cache only (`local_files_only`, and huggingface_hub's offline flag for the
  call), whatever HF_HUB_OFFLINE says, unless the caller passes `allow_download=True` (the node's
  `allow_model_download` parameter, the workstation tools). Then it honours HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE,
  read when the call is made. A miss fails at once with a message that says how to fetch the model.

Used by the runtime backends and by blip_train (which must not be imported here). Importing this module imports
transformers, so a backend's ImportError check covers it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from transformers import BlipForConditionalGeneration, BlipProcessor

from . import first_line
from .model_source import ModelFilesError, hub_offline, resolve_source

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weight_files(directory: str | os.PathLike, what: str = "--model") -> None:
    """Refuse a local model directory whose weights exist only as pickles; say how to convert them."""
    directory = Path(directory)
    if any((directory / name).is_file() for name in SAFETENSORS_FILES):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        raise ModelFilesError(
            directory,
            f"holds only pickle weights ({', '.join(pickles)}), which are never loaded because unpickling can run "
            "code; convert them once, where the file is trusted: python -c \"from transformers import "
            "BlipForConditionalGeneration as M; M.from_pretrained('IN', use_safetensors=False)"
            ".save_pretrained('OUT', safe_serialization=True)\" and copy the processor files beside it",
            what,
        )
    raise ModelFilesError(directory, "has no model.safetensors (not a save_pretrained BLIP directory)", what)


def _may_fetch(is_local: bool, allow_download: bool) -> bool:
    return allow_download and not is_local and not hub_offline()


def _hub_kwargs(is_local: bool, allow_download: bool) -> dict:
    return {} if _may_fetch(is_local, allow_download) else {"local_files_only": True}


@contextlib.contextmanager
def _no_hub_traffic(is_local: bool, allow_download: bool) -> Iterator[None]:
    """huggingface_hub's offline flag set for the call when nothing may be fetched.

    `local_files_only` alone is not enough: a cache lookup still builds request headers, and huggingface_hub fetches
    a registry from the hub for them unless its own flag (read once, at import) says offline.
    """
    if _may_fetch(is_local, allow_download):
        yield
        return
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _offline_hint(source: str, is_local: bool, allow_download: bool) -> str:
    if is_local:
        return ""
    if _may_fetch(is_local, allow_download):
        return " (not a local directory; hub ids need network access or the HF cache)"
    why = "HF_HUB_OFFLINE is set" if allow_download else "downloads are off"
    return (f" (hub id {source!r} is not in the local HF cache and {why}: fetch it once on a connected machine "
            f"with `hf download {source}` (same HF_HOME), or point the model at a save_pretrained directory)")


def load_processor(path_or_id: str | os.PathLike, what: str = "--model", allow_download: bool = False):
    """`BlipProcessor` (image processor + tokenizer, JSON and vocab files only) from a directory or hub id."""
    source, is_local = resolve_source(path_or_id, what)
    try:
        with _no_hub_traffic(is_local, allow_download):
            return BlipProcessor.from_pretrained(source, **_hub_kwargs(is_local, allow_download))
    except Exception as exc:  # OSError, ValueError, tokenizer errors: all mean "no usable processor here"
        hint = _offline_hint(source, is_local, allow_download)
        raise ModelFilesError(source, f"cannot load the BLIP processor{hint}: {first_line(exc, with_type=True)}",
                              what) from exc


def load_blip(path_or_id: str | os.PathLike, dtype=None, what: str = "--model", allow_download: bool = False):
    """(BlipForConditionalGeneration, BlipProcessor) from safetensors; ModelFilesError names the source and why.

    A hub id comes from the local HF cache only unless `allow_download`."""
    source, is_local = resolve_source(path_or_id, what)
    if is_local:
        check_weight_files(source, what)
    processor = load_processor(source, what, allow_download)
    kwargs = _hub_kwargs(is_local, allow_download)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        with _no_hub_traffic(is_local, allow_download):
            model = BlipForConditionalGeneration.from_pretrained(source, use_safetensors=True, **kwargs)
    except Exception as exc:  # OSError, ValueError, safetensors' own errors: all mean "cannot load these weights"
        raise ModelFilesError(source, f"cannot load a BLIP captioning model"
                                      f"{_offline_hint(source, is_local, allow_download)}: "
                                      f"{first_line(exc, with_type=True)}", what) from exc
    return model, processor
