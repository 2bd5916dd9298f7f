"""Manifests that make an ONNX export or a set of TensorRT engines describe (and check) themselves.

An export directory (`blip-export --out DIR`) holds `onnx_manifest.json`: every file's sha256, the graphs' input and
output names and dynamic axes, the token ids and sizes the runtime needs, library versions and the parity results.
`DIR/tensorrt/engine_manifest.json` describes engines built from those ONNX files: the ONNX hashes they came from,
the TensorRT version, the GPU name and compute capability, precision and optimisation-profile shapes. A TensorRT engine
only runs on the GPU model and TensorRT version that built it, so the backend checks that before deserialising.

Pure Python (json + hashlib): the checks run, and are tested, on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

ONNX_MANIFEST = "onnx_manifest.json"
ENGINE_MANIFEST = "engine_manifest.json"
ENGINE_DIR = "tensorrt"
ONNX_FORMAT = "blip-caption-onnx/1"
ENGINE_FORMAT = "blip-caption-tensorrt/1"


class ManifestError(ValueError):
    """A manifest is missing or malformed, or the files it lists are missing or changed; the message says which."""


class EngineMismatchError(ManifestError):
    """Engines were built for another GPU or TensorRT version (rebuild with force_engine_update)."""


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(directory: str | Path, names: Iterable[str]) -> dict[str, str]:
    directory = Path(directory)
    return {name: sha256_file(directory / name) for name in sorted(names)}


def write_json_atomic(path: str | Path, data: Mapping) -> None:
    """Write via a temporary file and rename, so a reader never sees half a manifest."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(path: str | Path, expected_format: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path} is missing (not a blip-export directory, or the export did not finish)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"{path} has format {found!r}, expected {expected_format!r}")
    if not isinstance(data.get("files"), dict) or not data["files"]:
        raise ManifestError(f"{path} lists no files")
    return data


def verify_files(directory: str | Path, manifest: Mapping) -> None:
    """Every listed file exists and has the recorded sha256; raises ManifestError naming the first that does not."""
    directory = Path(directory)
    for name, expected in sorted(manifest["files"].items()):
        path = directory / name
        if not path.is_file():
            raise ManifestError(f"{path} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ManifestError(f"{path} does not match the manifest (sha256 {actual[:12]}... != {expected[:12]}...):"
                                " the file was changed or corrupted; export again")


def load_export_manifest(export_dir: str | Path, verify: bool = True) -> dict:
    """The ONNX export's manifest, with its files' hashes checked when `verify`."""
    manifest = read_manifest(Path(export_dir) / ONNX_MANIFEST, ONNX_FORMAT)
    for key in ("graphs", "tokens", "model"):
        if key not in manifest:
            raise ManifestError(f"{Path(export_dir) / ONNX_MANIFEST} has no {key!r} section")
    if verify:
        verify_files(export_dir, manifest)
    return manifest


def engine_compatibility_problems(manifest: Mapping, runtime: Mapping) -> list[str]:
    """Why engines described by `manifest` cannot run here; empty when they can.

    `runtime` holds this machine's `tensorrt_version`, `gpu_name` and `compute_capability` (as TensorRTRuntimeInfo
    in tensorrt_backend reads them). TensorRT engines are tied to the exact TensorRT version and to the GPU model.
    """
    built = manifest.get("built_with", {})
    problems = []
    for key, what in (("tensorrt_version", "TensorRT version"), ("gpu_name", "GPU"),
                      ("compute_capability", "compute capability")):
        if str(built.get(key)) != str(runtime.get(key)):
            problems.append(f"{what} {built.get(key)!r} at build time, {runtime.get(key)!r} here")
    return problems


def check_engine_manifest(manifest: Mapping, runtime: Mapping, onnx_manifest: Mapping | None = None) -> None:
    """Raise EngineMismatchError unless the engines were built here-compatible and from the current ONNX files."""
    problems = engine_compatibility_problems(manifest, runtime)
    if onnx_manifest is not None:
        for name, digest in sorted(manifest.get("onnx_sha256", {}).items()):
            current = onnx_manifest["files"].get(name)
            if current != digest:
                problems.append(f"{name} changed since the engines were built")
    if problems:
        raise EngineMismatchError(
            "TensorRT engines do not fit this machine: " + "; ".join(problems)
            + " (rebuild them: blip-export --tensorrt-only --out EXPORT_DIR on this machine, or set "
            "force_engine_update)")
