"""Manifests that make an ONNX export or a set of TensorRT engines describe (and check) themselves.

An export directory (`blip-export --out DIR`) holds `onnx_manifest.json`: every file's sha256 ("files"), the graphs
("graphs": name -> file, input and output names, dynamic axes; nothing else), the processor files the backends load
("processor_files"), tensor shapes ("shapes"), the token ids and sizes the runtime needs, library versions and the
parity results. A backend opens only files the manifest hashes: `load_export_manifest` refuses an export where a graph
or processor file is not under "files", or where a processor file lies in the directory unlisted (transformers would
read it), so a hand-edited manifest cannot smuggle an unverified file past the hash check.
`DIR/tensorrt/engine_manifest.json` describes engines built from those ONNX files: the ONNX hashes they came from,
the TensorRT version, the GPU name and compute capability, precision and optimisation-profile shapes. A TensorRT engine
only runs on the GPU model and TensorRT version that built it, so the backend checks that before deserialising.

Pure Python (json + hashlib): the checks run, and are tested, on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .caption_settings import GENERATION_FILE, PROMPT_FILE

ONNX_MANIFEST = "onnx_manifest.json"
ENGINE_MANIFEST = "engine_manifest.json"
ENGINE_DIR = "tensorrt"
ONNX_FORMAT = "blip-caption-onnx/2"
#: The first format: "cross_kv_shape" among the graphs, processor files not named. Still read (see _from_format_1).
ONNX_FORMAT_1 = "blip-caption-onnx/1"
ENGINE_FORMAT = "blip-caption-tensorrt/1"
#: Processor / tokenizer files an export may hold beside the graphs (whichever the checkpoint has); the backends load
#: them with transformers' from_pretrained on the export directory.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt", "config.json", GENERATION_FILE, PROMPT_FILE)


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


@contextlib.contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """A temporary directory beside `target` that replaces `target` when the block ends and is removed if it raises,
    so a failed export or engine build never leaves files that look valid."""
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_manifest(path: str | Path, expected_format: str | tuple[str, ...]) -> dict:
    path = Path(path)
    formats = (expected_format,) if isinstance(expected_format, str) else expected_format
    if not path.is_file():
        raise ManifestError(f"{path} is missing (not a blip-export directory, or the export did not finish)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") not in formats:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"{path} has format {found!r}, expected {' or '.join(map(repr, formats))}")
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


def require_hashed(manifest: Mapping, names: Iterable[str], path: str | Path) -> None:
    """Raise ManifestError unless every file in `names` (files a backend opens) has a hash under "files"."""
    unhashed = sorted(set(names) - set(manifest["files"]))
    if unhashed:
        raise ManifestError(f"{path} does not hash {', '.join(unhashed)} under 'files', yet a backend opens "
                            f"{'it' if len(unhashed) == 1 else 'them'}: refusing unverified files; export again")


def load_export_manifest(export_dir: str | Path, verify: bool = True) -> dict:
    """The ONNX export's manifest (in the current schema), refused unless every file a backend opens from the export
    is hashed; the hashes themselves are checked when `verify`."""
    path = Path(export_dir) / ONNX_MANIFEST
    manifest = read_manifest(path, (ONNX_FORMAT, ONNX_FORMAT_1))
    if manifest["format"] == ONNX_FORMAT_1:
        manifest = _from_format_1(manifest)
    for key in ("graphs", "processor_files", "shapes", "tokens", "model"):
        if key not in manifest:
            raise ManifestError(f"{path} has no {key!r} section")
    bad = sorted(name for name, graph in manifest["graphs"].items()
                 if not isinstance(graph, dict) or not isinstance(graph.get("file"), str))
    if bad:
        raise ManifestError(f"{path}: graphs {', '.join(bad)} name no file")
    require_hashed(manifest, [graph["file"] for graph in manifest["graphs"].values()] + manifest["processor_files"],
                   path)
    unlisted = sorted(name for name in PROCESSOR_FILES
                      if name not in manifest["processor_files"] and (Path(export_dir) / name).is_file())
    if unlisted:
        raise ManifestError(f"{path} does not list {', '.join(unlisted)} among its processor files, which the "
                            "processor would read unverified; export again")
    if verify:
        verify_files(export_dir, manifest)
    return manifest


def _from_format_1(manifest: dict) -> dict:
    """A format-1 manifest in the current schema. Format 1 hashed every file of the export directory and kept the
    cross_kv shape among the graphs, so its processor files are the hashed files no graph names."""
    graphs = {name: graph for name, graph in manifest.get("graphs", {}).items() if name != "cross_kv_shape"}
    graph_files = {graph.get("file") for graph in graphs.values() if isinstance(graph, dict)}
    shapes = {"cross_kv": manifest["graphs"]["cross_kv_shape"]} if "cross_kv_shape" in manifest.get("graphs", {}) \
        else {}
    return {**manifest, "graphs": graphs, "shapes": shapes,
            "processor_files": sorted(name for name in manifest["files"] if name not in graph_files)}


def engine_compatibility_problems(manifest: Mapping, runtime: Mapping) -> list[str]:
    """Why engines described by `manifest` cannot run here; empty when they can.

    `runtime` holds this machine's `tensorrt_version`, `gpu_name` and `compute_capability` (as
    tensorrt_backend.runtime_info reads them). TensorRT engines are tied to the exact TensorRT version and to the GPU
    model.
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
