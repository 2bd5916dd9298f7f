"""A CPU vehicle on onnxruntime or openvino needs neither torch nor transformers: the backends, the node and
caption-bag run on a blip-export directory with both made unimportable (test/hooks' block_torch), and caption as the
torch backend does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blip_caption_ros import bag_io
from test.ros_helpers import caption_one_frame
from test.support import REPO, TORCH

HOOKS = Path(__file__).parent / "hooks"
BLOCKED = {"PYTHONPATH": os.pathsep.join([str(HOOKS), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "CAPTION_TEST_FAULTS": "block_torch"}
IMAGES = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(3)]
#: Captions every backend of the export in a process where torch cannot be imported; prints them as JSON.
CAPTION_SCRIPT = """
import json, sys
import numpy as np
from blip_caption_ros.backends import CaptionerConfig, load_captioner
model, backends, images = sys.argv[1], sys.argv[2].split(","), np.load(sys.argv[3])
captions = {}
for backend in backends:
    for beams in (1, 3):
        captioner = load_captioner(CaptionerConfig(model=model, backend=backend, max_new_tokens=10, num_beams=beams,
                                                   prompt="a picture of"))
        captions[f"{backend} {beams}"] = captioner.caption(list(images))
import blip_caption_ros.caption_bag, blip_caption_ros.bag_replay, blip_caption_ros.node  # noqa: E401
print(json.dumps({"captions": captions, "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def _runtimes() -> list[str]:
    import importlib.util

    return [backend for backend, module in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"))
            if importlib.util.find_spec(module)]


def test_the_export_runtimes_caption_without_torch_as_torch_does(tiny_export, tmp_path, request):
    images = tmp_path / "images.npy"
    np.save(images, np.stack(IMAGES))
    run = subprocess.run([sys.executable, "-c", CAPTION_SCRIPT, str(tiny_export), ",".join(_runtimes()),
                          str(images)], capture_output=True, text=True, timeout=180, cwd=REPO,
                         env={**os.environ, **BLOCKED})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["loaded"] == []
    if not TORCH:
        assert all(all(isinstance(c, str) for c in captions) for captions in result["captions"].values())
        return
    from blip_caption_ros.backends import CaptionerConfig, load_captioner

    for beams in (1, 3):
        reference = load_captioner(CaptionerConfig(model=str(request.getfixturevalue("tiny_blip_dir")),
                                                   max_new_tokens=10, num_beams=beams, prompt="a picture of"))
        expected = reference.caption(IMAGES)
        for backend in _runtimes():
            assert result["captions"][f"{backend} {beams}"] == expected, (backend, beams)


@pytest.mark.ros
def test_the_node_captions_on_onnxruntime_without_torch(tiny_export):
    caption, _ = caption_one_frame("torch_free", "-p", "backend:=onnxruntime", "-p", f"model:={tiny_export}",
                                   env=BLOCKED)
    assert caption["backend"] == "onnxruntime" and isinstance(caption["caption"], str)


def test_caption_bag_runs_without_torch(tiny_export, drive_bag, tmp_path):
    run = subprocess.run([sys.executable, "-m", "blip_caption_ros.caption_bag", str(drive_bag), "--out",
                          str(tmp_path / "out"), "--model", str(tiny_export), "--backend", "onnxruntime",
                          "--rate", "0"], capture_output=True, text=True, timeout=180, cwd=REPO,
                         env={**os.environ, **BLOCKED})
    assert run.returncode == 0, run.stderr[-3000:]
    with bag_io.BagReader(tmp_path / "out") as reader:
        records = [json.loads(reader.decode(m).data) for m in reader.messages(["/front/caption"])]
    assert records and all(r["backend"] == "onnxruntime" for r in records)
