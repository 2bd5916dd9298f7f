"""A local model loads with the network blocked and hub offline mode off; hub ids and pickles fail clearly.

conftest sets HF_HUB_OFFLINE=1 for the whole session; these tests turn it off again (the environment variable and the
value huggingface_hub read at import), block every outgoing connection at the socket layer, and check that loading
a local directory never tried one.
"""

from __future__ import annotations

import shutil
import socket

import pytest
from safetensors.torch import load_file

from blip_caption_ros.backends import CaptionerConfig, ModelLoadError, load_captioner
from blip_caption_ros.backends.model_loading import ModelFilesError, load_blip, load_processor
from test.support import require_module
from test.training_helpers import tiny_args


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Hub offline mode off, sockets blocked; yields the list of attempted connections (must stay empty)."""
    import huggingface_hub.constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise NetworkBlocked(f"test blocked a connection to {attempts[-1]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_the_block_works(no_network):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    no_network.clear()


def test_local_directory_loads_without_any_connection(no_network, tiny_blip_dir):
    model, processor = load_blip(tiny_blip_dir)
    assert model.config.vision_config.hidden_size == 32 and processor.tokenizer is not None
    assert load_processor(str(tiny_blip_dir)).tokenizer.vocab_size == processor.tokenizer.vocab_size
    captioner = load_captioner(CaptionerConfig(model=str(tiny_blip_dir), max_new_tokens=3))
    assert len(captioner.caption([require_module("numpy").zeros((32, 32, 3), "uint8")])) == 1
    assert no_network == []


@pytest.mark.slow
def test_train_and_eval_on_a_local_model_make_no_connection(no_network, tiny_blip_dir, synthetic_bdd,
                                                            tmp_path):
    from blip_train.eval import main as eval_main
    from blip_train.train import main as train_main

    data = synthetic_bdd(4, 2, seed=3)
    out = tmp_path / "run"
    # --arch none: the local --model, not one built from scratch
    assert train_main(tiny_args(data, out, "--arch", "none", "--model", str(tiny_blip_dir), "--epochs", "1",
                                "--batch_size", "4", "--max_new_tokens", "4")) == 0
    assert (out / "checkpoints" / "last" / "model.safetensors").is_file()
    assert eval_main(["--checkpoint", str(out / "checkpoints" / "last"), "--out", str(tmp_path / "eval"),
                      "--cache_dir", str(tmp_path / "cache"), "--max_new_tokens", "4"]) == 0
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert no_network == []


def test_hub_id_with_offline_mode_fails_clearly(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after import: read at call time all the same
    with pytest.raises(ModelFilesError, match=r"not in the local HF cache and HF_HUB_OFFLINE is set") as error:
        load_blip("not-cached/blip-model", allow_download=True)  # a workstation tool may fetch; offline says no
    assert "'not-cached/blip-model'" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ModelFilesError, match=r"not in the local HF cache and downloads are off.*hf download"):
        load_blip("not-cached/blip-model")  # the runtime's default: the cache only
    with pytest.raises(ModelLoadError, match="not in the local HF cache"):
        load_captioner(CaptionerConfig(model="not-cached/blip-model"))
    assert no_network == []


@pytest.mark.parametrize("name", ["/no/such/model", "./relative/model", "~/nothing-here-4711", "a/b/c"])
def test_missing_paths_are_not_hub_lookups(no_network, name):
    with pytest.raises(ModelFilesError, match="no such directory"):
        load_blip(name)
    assert no_network == []


def test_pickle_only_checkpoint_is_refused(tiny_blip_dir, tmp_path, no_network):
    import torch

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_blip_dir, pickled)
    weights = pickled / "model.safetensors"
    torch.save(load_file(weights), pickled / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelFilesError, match=r"only pickle weights \(pytorch_model.bin\).*save_pretrained") as error:
        load_blip(pickled)
    assert str(pickled) in str(error.value)
    with pytest.raises(ModelLoadError, match="only pickle weights"):
        load_captioner(CaptionerConfig(model=str(pickled)))
    from blip_train.checkpoint import CheckpointError
    from blip_train.checkpoint import load_blip as load_checkpoint

    with pytest.raises(CheckpointError, match="--checkpoint .*only pickle weights"):
        load_checkpoint(str(pickled), "--checkpoint")
    assert no_network == []


def test_a_file_is_not_a_model(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelFilesError, match="is a file, not a model directory"):
        load_blip(path)
