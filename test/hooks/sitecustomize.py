"""Test-only fault injection for a real caption_node process (never shipped: it lives in test/).

A test starts the node with this directory first on PYTHONPATH, so Python imports this module at start-up, and
names the faults in CAPTION_TEST_FAULTS (comma-separated):

    block_torch           importing torch, torchvision or transformers raises ImportError (a torch-free vehicle)
    block_network         every socket connect and DNS lookup raises OSError (the node must not need the network)
    publish_raises_once   the first caption publish raises RuntimeError (then publishing works again)
    caption_raises_every=N  the captioner (torch or a blip-export runtime) raises RuntimeError on every Nth batch
    worker_dies_after=N   the captioner raises a BaseException on batch N, which ends the worker thread
    slow_load=S           every model load prints "test hook: model load N" and takes S seconds longer

Faults patch shared classes (socket, rclpy's Publisher, the torch and blip-export backends, the import system), so
they reach the node even though `python -m blip_caption_ros.caption_node` runs it as __main__.
"""

import os

FAULTS = dict(item.partition("=")[::2] for item in os.environ.get("CAPTION_TEST_FAULTS", "").split(",") if item)


class InjectedWorkerDeath(BaseException):
    """Not an Exception: nothing in the node's per-batch guards catches it, so it ends the worker thread."""


def _block_network():
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test (CAPTION_TEST_FAULTS=block_network)")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse


class _BlockTorch:
    """A meta-path finder that refuses torch and transformers, as on a vehicle that never installed them."""

    BLOCKED = {"torch", "torchvision", "transformers"}

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked by the test (CAPTION_TEST_FAULTS=block_torch)", name=name)
        return None


def _publish_raises_once():
    from rclpy.publisher import Publisher

    original = Publisher.publish
    state = {"raised": False}

    def publish(self, msg):
        if not state["raised"] and self.topic_name.endswith("/caption"):
            state["raised"] = True
            raise RuntimeError("injected publish failure")
        return original(self, msg)

    Publisher.publish = publish


def _wrap_caption(every: int = 0, die_at: int = 0):
    from blip_caption_ros.backends.blip_export import ExportCaptioner
    from blip_caption_ros.backends.torch_backend import TorchCaptioner

    state = {"batches": 0}
    for captioner in (TorchCaptioner, ExportCaptioner):  # the node's backend: torch, or onnxruntime without torch
        original = captioner.caption

        def caption(self, images, prompt=None, original=original):
            state["batches"] += 1
            if every and state["batches"] % every == 0:
                raise RuntimeError(f"injected model failure on batch {state['batches']}")
            if die_at and state["batches"] == die_at:
                raise InjectedWorkerDeath(f"injected worker death on batch {state['batches']}")
            return original(self, images, prompt)

        captioner.caption = caption


def _slow_load(seconds: float):
    import time

    from blip_caption_ros import backends

    original = backends.load_captioner
    state = {"loads": 0}

    def load_captioner(config):
        state["loads"] += 1
        print(f"test hook: model load {state['loads']}", flush=True)
        time.sleep(seconds)
        return original(config)

    backends.load_captioner = load_captioner


if "block_torch" in FAULTS:
    import sys

    sys.meta_path.insert(0, _BlockTorch())
if "block_network" in FAULTS:
    _block_network()
if "publish_raises_once" in FAULTS:
    _publish_raises_once()
if "caption_raises_every" in FAULTS or "worker_dies_after" in FAULTS:
    _wrap_caption(int(FAULTS.get("caption_raises_every") or 0), int(FAULTS.get("worker_dies_after") or 0))
if "slow_load" in FAULTS:
    _slow_load(float(FAULTS["slow_load"]))
