"""ament_python package: the vehicle runtime (blip_caption_ros) and the workstation tools (blip_train)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "blip_caption_ros"
TORCH, TRANSFORMERS, TOKENIZERS = "torch>=2.1", "transformers>=4.40", "tokenizers>=0.15"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.json")
         + glob("config/*.rviz")),
        ("share/" + package_name + "/config/train", glob("config/train/*.yaml")),
    ],
    # Loose on purpose: a vehicle's ROS install or a Jetson's NVIDIA-built torch must satisfy them.
    # OpenCV comes from the system (python3-opencv, see package.xml) or requirements-dev.txt, so a pip install
    # never shadows a vehicle's CUDA-enabled cv2. torch and transformers are extras: a CPU vehicle on onnxruntime or
    # openvino runs an export with numpy and tokenizers alone (`pip install .[onnx]`, no torch).
    install_requires=[
        "setuptools",
        "numpy>=1.21",
        "pyyaml>=5.4",
        "pillow>=9.0",
        "tqdm>=4.60",
        "msgspec>=0.18",
    ],
    extras_require={
        # backends torch / torch-cuda, blip-export, training and evaluation
        "torch": [TORCH, TRANSFORMERS, "safetensors>=0.4"],
        # runtimes of a blip-export directory (no torch)
        "onnx": ["onnxruntime>=1.17", TOKENIZERS],
        "openvino": ["openvino>=2024.0", TOKENIZERS],  # x86 CPUs, Intel GPUs/NPUs; reads blip-export's ONNX graphs
        # x86_64; JetPack ships TensorRT (and NVIDIA's torch, whose CUDA tensors hold the engines' buffers) on Jetson
        "tensorrt": ["tensorrt>=10", TORCH, TOKENIZERS],
        "export": [TORCH, TRANSFORMERS, "safetensors>=0.4", "onnx>=1.15", "onnxscript", "onnxruntime>=1.17"],
        "train": [TORCH, TRANSFORMERS, "safetensors>=0.4", "accelerate>=0.30", "pycocoevalcap>=1.2",
                  "matplotlib>=3.5"],
        "bags": ["rosbags>=0.10", "mcap>=1.1", "mcap-ros2-support>=0.5"],
        "fleet": ["ray>=2.9", "duckdb>=1.0"],  # caption-bags (Ray), caption-index / caption-search (DuckDB)
    },
    zip_safe=True,
    maintainer="blip_caption_ros maintainers",
    maintainer_email="maintainers@blip-caption-ros.dev",
    description="BLIP scene captions for ROS 2 vehicles, with BDD100K fine-tuning tools.",
    license="Apache-2.0",
    # Humble's 3.10, Jazzy's 3.12, Lyrical's 3.12-3.14 (the README's table says which are tested here)
    python_requires=">=3.10,<3.15",
    classifiers=["Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.11",
                 "Programming Language :: Python :: 3.12", "Programming Language :: Python :: 3.13",
                 "Programming Language :: Python :: 3.14"],
    entry_points={
        "console_scripts": [
            "caption_node = blip_caption_ros.caption_node:main",
            "caption-bag = blip_caption_ros.caption_bag:main",
            "bag-replay = blip_caption_ros.bag_replay:main",
            "blip-train = blip_train.train:main",
            "blip-eval = blip_train.eval:main",
            "blip-compare = blip_train.compare:main",
            "blip-export = blip_train.export:main",
            "blip-demo = blip_train.demo:main",
            "blip-captions = blip_train.captions:main",
            "blip-synth = blip_train.datasets.synthetic:main",
            "blip-synth-drive = blip_train.drives.synthetic_drive:main",
            "bdd-to-bag = blip_train.drives.bdd_to_bag:main",
            "caption-bags = blip_train.drives.fleet:main",
            "caption-index = blip_train.drives.scenario_index:main",
            "caption-search = blip_train.drives.scenario_search:main",
        ],
    },
)
