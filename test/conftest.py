"""Session-wide test environment.

DDS must never leave loopback on a test machine, so discovery is pinned to localhost and every pytest process gets a
ROS domain id and ROS_HOME of its own, set here at import time: before any test (or child process it starts) can
import rclpy, and without relying on each test to remember.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from test.ros_helpers import loopback_ros_environment
from test.support import TORCH, unavailable
from test.tiny_export import build_tiny, export_tiny

loopback_ros_environment("blip_caption_ros_test_home_")
os.environ.setdefault("OMP_NUM_THREADS", "1")


# --- fixtures shared by the vehicle-side tests (blip_caption_ros) ---


@pytest.fixture
def probe(request):
    """A ROS probe node (ros_helpers.Probe, named after the test module) in an rclpy context of the test's own."""
    import rclpy

    from test.ros_helpers import Probe

    rclpy.init()
    probe = Probe(f"{request.module.__name__.rpartition('.')[2]}_probe")
    yield probe
    probe.destroy()
    rclpy.shutdown()


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory):
    """A random tiny BLIP captioner saved with save_pretrained (weights + processor), built once per session."""
    return build_tiny(tmp_path_factory.mktemp("tiny_blip"))


#: A prepared blip-export directory of the tiny model (`make test-jazzy` exports it once with torch and hands it to the
#: torch-free environments, which cannot export).
PREPARED_EXPORT = "BLIP_TEST_EXPORT"


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, request):
    """`blip-export` of tiny_blip_dir (fp32 graphs + int8/), made once per session; $BLIP_TEST_EXPORT instead where
    set (the torch-free environments, which cannot export). Shared: copy it before changing anything in it."""
    prepared = os.environ.get(PREPARED_EXPORT)
    if prepared:
        if not (Path(prepared) / "onnx_manifest.json").is_file():
            pytest.fail(f"{PREPARED_EXPORT}={prepared} is not a blip-export directory")
        return Path(prepared)
    if not TORCH:
        unavailable(f"no torch to export the tiny model, and {PREPARED_EXPORT} names no prepared export")
    return export_tiny(request.getfixturevalue("tiny_blip_dir"), tmp_path_factory.mktemp("tiny_export") / "onnx")


@dataclass(frozen=True)
class CaptionModel:
    """The model the ROS-facing tests run the node on: the tiny checkpoint on torch where torch is installed, its
    export on onnxruntime in the torch-free environments."""

    path: Path
    backend: str

    @property
    def node_args(self) -> tuple[str, ...]:
        return ("-p", f"model:={self.path}", "-p", f"backend:={self.backend}")

    @property
    def weights(self) -> str:
        """The file whose corruption must stop the model from loading."""
        return "model.safetensors" if self.backend == "torch" else "vision.onnx"


@pytest.fixture(scope="session")
def caption_model(request) -> CaptionModel:
    if TORCH and not os.environ.get(PREPARED_EXPORT):
        return CaptionModel(request.getfixturevalue("tiny_blip_dir"), "torch")
    return CaptionModel(request.getfixturevalue("tiny_export"), "onnxruntime")


@pytest.fixture(scope="session")
def torch_captioner(tiny_blip_dir):
    """The torch backend on tiny_blip_dir (12 new tokens): the reference the other runtimes must match."""
    from blip_caption_ros.backends import CaptionerConfig, load_captioner

    return load_captioner(CaptionerConfig(model=str(tiny_blip_dir), max_new_tokens=12))


@pytest.fixture(scope="session")
def drive_bag(tmp_path_factory):
    """A synthetic 1.5 s drive (160x90 JPEG camera, LiDAR, radar, GPS/IMU, speed) as an MCAP rosbag2, written once.
    Shared: tests read it, and write anything of their own elsewhere."""
    from blip_train.drives.synthetic_drive import DriveConfig, write_drive

    path = tmp_path_factory.mktemp("drive") / "drive"
    write_drive(path, DriveConfig(duration_s=1.5, width=160, height=90))
    return path


# --- fixtures shared by the training-side tests (blip_train) ---


@pytest.fixture(scope="session")
def synthetic_bdd(tmp_path_factory):
    """synthetic_bdd(train, val, seed): a generated BDD100K root with that many frames per split, made once."""
    from blip_train.datasets.synthetic import generate_dataset

    made = {}

    def make(train: int, val: int, seed: int):
        if (train, val, seed) not in made:
            root = tmp_path_factory.mktemp(f"bdd_{train}_{val}_{seed}")
            generate_dataset(root, train, split="train", seed=seed)
            generate_dataset(root, val, split="val", seed=seed)
            made[train, val, seed] = root
        return made[train, val, seed]

    return make


@pytest.fixture(scope="session")
def synthetic_cityscapes(tmp_path_factory):
    """synthetic_cityscapes(train, seed): a generated Cityscapes root with a training split, made once."""
    from blip_train.datasets.synthetic import generate_cityscapes

    made = {}

    def make(train: int, seed: int):
        if (train, seed) not in made:
            made[train, seed] = tmp_path_factory.mktemp(f"cityscapes_{train}_{seed}")
            generate_cityscapes(made[train, seed], train, split="train", seed=seed)
        return made[train, seed]

    return make


@pytest.fixture(scope="session")
def dataset(synthetic_bdd):
    """The BDD100K root most training tests run on: 16 training and 6 validation frames."""
    return synthetic_bdd(16, 6, seed=1)
