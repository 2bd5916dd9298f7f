"""Manifest checks, pure Python: hashes of export files, and engines built for another GPU or TensorRT version.

These test the checks themselves with hand-written manifests; they do not stand in for TensorRT (the engines
are built and run by scripts/verify_gpu_backends.py on a machine that has it).
"""

import json

import pytest

from blip_caption_ros.backends.engine_manifest import (
    ENGINE_FORMAT,
    ONNX_FORMAT,
    EngineMismatchError,
    ManifestError,
    check_engine_manifest,
    engine_compatibility_problems,
    file_hashes,
    load_export_manifest,
    read_manifest,
    sha256_file,
    staged_directory,
    verify_files,
    write_json_atomic,
)

HERE = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


def engine_manifest(**built_with):
    return {"format": ENGINE_FORMAT, "built_with": {**HERE, **built_with}, "files": {"vision.plan": "0" * 64},
            "onnx_sha256": {"vision.onnx": "a" * 64, "decoder.onnx": "b" * 64}}


def test_matching_engines_pass():
    assert engine_compatibility_problems(engine_manifest(), HERE) == []
    check_engine_manifest(engine_manifest(), HERE, {"files": {"vision.onnx": "a" * 64, "decoder.onnx": "b" * 64}})


@pytest.mark.parametrize(("built_with", "message"), [
    ({"gpu_name": "NVIDIA H200"}, "GPU 'NVIDIA H200' at build time, 'Orin' here"),
    ({"tensorrt_version": "10.0.1"}, "TensorRT version '10.0.1' at build time, '10.3.0' here"),
    ({"compute_capability": "9.0"}, "compute capability '9.0' at build time, '8.7' here"),
])
def test_engines_for_another_gpu_or_tensorrt_are_refused_with_the_fix(built_with, message):
    with pytest.raises(EngineMismatchError) as error:
        check_engine_manifest(engine_manifest(**built_with), HERE)
    assert message in str(error.value) and "force_engine_update" in str(error.value)
    assert "\n" not in str(error.value)


def test_engines_from_older_onnx_files_are_refused():
    with pytest.raises(EngineMismatchError, match="decoder.onnx changed since the engines were built"):
        check_engine_manifest(engine_manifest(), HERE, {"files": {"vision.onnx": "a" * 64, "decoder.onnx": "c" * 64}})


def test_export_manifest_verifies_hashes(tmp_path):
    (tmp_path / "vision.onnx").write_bytes(b"graph")
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    manifest = {"format": ONNX_FORMAT, "graphs": {"vision": {"file": "vision.onnx"}}, "processor_files": ["vocab.txt"],
                "shapes": {}, "tokens": {}, "model": {}, "files": file_hashes(tmp_path, ["vision.onnx", "vocab.txt"])}
    write_json_atomic(tmp_path / "onnx_manifest.json", manifest)
    assert load_export_manifest(tmp_path)["files"]["vision.onnx"] == sha256_file(tmp_path / "vision.onnx")
    (tmp_path / "vision.onnx").write_bytes(b"graph!")
    with pytest.raises(ManifestError, match="vision.onnx does not match the manifest"):
        verify_files(tmp_path, manifest)
    (tmp_path / "vision.onnx").write_bytes(b"graph")
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(ManifestError, match="vocab.txt is listed in the manifest but missing"):
        load_export_manifest(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.parametrize(("content", "message"), [
    (None, "is missing"),
    ("{", "is not readable JSON"),
    (json.dumps({"format": "other/1", "files": {"a": "b"}}), "has format 'other/1'"),
    (json.dumps({"format": ENGINE_FORMAT, "files": {}}), "lists no files"),
])
def test_malformed_manifests(tmp_path, content, message):
    path = tmp_path / "engine_manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path, ENGINE_FORMAT)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m["files"].pop("vision.onnx"), "does not hash vision.onnx under 'files'"),
    (lambda m: m["files"].pop("vocab.txt"), "does not hash vocab.txt under 'files'"),
    (lambda m: m["processor_files"].remove("vocab.txt"), "does not list vocab.txt among its processor files"),
    (lambda m: m["graphs"].update(cross_kv_shape=[1, 2]), "graphs cross_kv_shape name no file"),
    (lambda m: m.pop("processor_files"), "has no 'processor_files' section"),
])
def test_export_manifest_refuses_files_it_does_not_hash(tmp_path, edit, message):
    """A backend opens every graph file and processor file: each must be hashed (even with verify=False, which
    skips only the hashing itself)."""
    (tmp_path / "vision.onnx").write_bytes(b"graph")
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    manifest = {"format": ONNX_FORMAT, "graphs": {"vision": {"file": "vision.onnx"}}, "processor_files": ["vocab.txt"],
                "shapes": {}, "tokens": {}, "model": {}, "files": file_hashes(tmp_path, ["vision.onnx", "vocab.txt"])}
    edit(manifest)
    write_json_atomic(tmp_path / "onnx_manifest.json", manifest)
    for verify in (True, False):
        with pytest.raises(ManifestError, match=message) as error:
            load_export_manifest(tmp_path, verify=verify)
        assert "\n" not in str(error.value)


def test_engine_manifest_must_hash_both_plans(tmp_path):
    """The tensorrt backend opens vision.plan and decoder.plan: a manifest hashing only one is refused."""
    from blip_caption_ros.backends.tensorrt_backend import read_engine_manifest

    for name in ("vision.plan", "decoder.plan"):
        (tmp_path / name).write_bytes(name.encode())
    manifest = {**engine_manifest(), "files": file_hashes(tmp_path, ["vision.plan", "decoder.plan"])}
    write_json_atomic(tmp_path / "engine_manifest.json", manifest)
    assert read_engine_manifest(tmp_path)["files"] == manifest["files"]
    del manifest["files"]["decoder.plan"]
    write_json_atomic(tmp_path / "engine_manifest.json", manifest)
    with pytest.raises(ManifestError, match="does not hash decoder.plan under 'files'"):
        read_engine_manifest(tmp_path)


def test_staged_directory_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "tensorrt"
    target.mkdir()
    (target / "old.plan").write_text("old")
    with pytest.raises(RuntimeError, match="build failed"), staged_directory(target) as staging:
        (staging / "new.plan").write_text("half")
        raise RuntimeError("build failed")
    assert [p.name for p in tmp_path.iterdir()] == ["tensorrt"] and (target / "old.plan").is_file()
    with staged_directory(target) as staging:
        (staging / "new.plan").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["tensorrt"]
    assert [p.name for p in target.iterdir()] == ["new.plan"]
