"""Where a model comes from: a local directory or a hub id, and whether a hub id is in the local HF cache.

Light on purpose (no transformers, no torch): `load_captioner` asks `check_local_hub_model` before a backend imports
its libraries, so an offline vehicle with an uncached hub id fails in well under a second, without a connection.
ModelFilesError is the error of model_loading and export_processor too.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
from pathlib import Path

_TRUE = {"1", "ON", "YES", "TRUE"}
#: How long a node that may download waits for the hub to answer before it gives up (huggingface_hub itself retries
#: a dead network for minutes).
HUB_PROBE_TIMEOUT_S = 5.0


class ModelFilesError(ValueError):
    """A BLIP model or processor that cannot be loaded; `source` is the path or hub id, `reason` one line."""

    def __init__(self, source: str, reason: str, what: str = "--model"):
        self.source, self.what = str(source), what
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{what} {self.source}: {self.reason}")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as set now (huggingface_hub reads them only once, at import)."""
    from_env = any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    from huggingface_hub import constants

    return from_env or bool(constants.HF_HUB_OFFLINE)


def looks_like_path(name: str) -> bool:
    """True when `name` can only be a filesystem path; hub ids are `name` or `org/name`."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name) or (os.altsep is not None and os.altsep in name))


def resolve_source(path_or_id: str | os.PathLike, what: str = "--model") -> tuple[str, bool]:
    """(path or id, is_local): a local directory, or a hub id; ModelFilesError for a missing path or a file."""
    name = os.fspath(path_or_id)
    if not name.strip():
        raise ModelFilesError(name, "empty model path or hub id", what)
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local), True
    if local.exists():
        raise ModelFilesError(name, "is a file, not a model directory (a save_pretrained directory)", what)
    if looks_like_path(name):
        raise ModelFilesError(name, "no such directory", what)
    return name, False


def check_local_hub_model(path_or_id: str | os.PathLike, what: str = "--model") -> None:
    """ModelFilesError at once when `path_or_id` is a hub id whose config.json is not in the local HF cache.

    A lookup in the cache directory only (huggingface_hub.try_to_load_from_cache): nothing is fetched.
    """
    source, is_local = resolve_source(path_or_id, what)
    if is_local:
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "config.json")
    except ValueError as exc:  # not a valid repo id
        raise ModelFilesError(source, f"neither a local directory nor a valid hub id ({exc})", what) from None
    if not isinstance(cached, str):
        raise ModelFilesError(source, f"hub id {source!r} is not in the local HF cache and downloads are off: fetch "
                                      f"it once on a connected machine with `hf download {source}` (same HF_HOME), "
                                      "or point the model at a save_pretrained directory", what)


def check_hub_reachable(path_or_id: str | os.PathLike, what: str = "--model",
                        timeout_s: float = HUB_PROBE_TIMEOUT_S) -> None:
    """With downloads allowed: ModelFilesError within `timeout_s` when `path_or_id` is a hub id that is not in the
    local HF cache and the hub's endpoint does not accept a connection (no network on the vehicle)."""
    source, is_local = resolve_source(path_or_id, what)
    if is_local or hub_offline():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            return
    except ValueError:  # not a valid repo id: the loader says so
        return
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    problem = _connect_problem(endpoint.hostname or "", port, timeout_s)
    if problem:
        raise ModelFilesError(source, f"hub id {source!r} is not in the local HF cache and the hub "
                                      f"({constants.ENDPOINT}) cannot be reached within {timeout_s:g} s ({problem}): "
                                      f"connect the vehicle, or fetch it once on a connected machine with "
                                      f"`hf download {source}` (same HF_HOME)", what)


def _connect_problem(host: str, port: int, timeout_s: float) -> str:
    """Why a TCP connection to host:port fails within `timeout_s` ("" when it succeeds); name lookup included, on a
    daemon thread, since a resolver can block longer than any socket timeout."""
    outcome: dict[str, str] = {}

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome["ok"] = ""
        except Exception as exc:  # OSError above all; anything else is a failed probe too, never a dead thread
            outcome["error"] = str(exc) or type(exc).__name__

    thread = threading.Thread(target=connect, name="hub_probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return "no answer"
    return "" if "ok" in outcome else outcome.get("error", "the probe ended without an answer")
