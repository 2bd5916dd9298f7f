"""What every test module may need: where the repository and the shared sample files are, and how a test reacts when
something it needs is missing.

The real BDD100K / BDD-X samples are not part of the repository: they lie in `shared/samples/` beside the checkout
(`../shared/samples`, as a developer's machine and CI lay it out).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
#: Whether torch is installed: not in the torch-free vehicle environments (`make test-jazzy`, `test-humble-python`).
TORCH = importlib.util.find_spec("torch") is not None


def unavailable(reason: str):
    """Skip the calling test because `reason` (data or a tool it needs is missing); in CI (CI=true), where everything
    a test needs must be installed or laid out, fail instead, so a missing file can never pass as a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a test whose data or tool is missing fails instead of skipping)")
    pytest.skip(reason)


def sample(name: str) -> Path:
    """The path of shared/samples/`name`; unavailable() when it is not there."""
    path = SAMPLES / name
    if not path.is_file():
        unavailable(f"{name} is not in {SAMPLES} (the shared samples beside the checkout)")
    return path


def require_module(name: str):
    """Import `name` for a test module that needs it (pytest.importorskip, but failing in CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"{name} is not installed ({exc})")


def flip_byte(path: Path, offset: int = 100) -> None:
    """Corrupt `path` in place by inverting one byte: a file whose size is right and whose content is not."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
