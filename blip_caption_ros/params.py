"""The node's parameters: names, defaults, descriptions and checks in one place.

node.py declares exactly these (with these descriptions), reads them once into `NodeParams`, and config/caption.yaml
lists every one of them (a test checks both). ROS-free so it can be documented and tested without rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .backends import PRECISIONS, CaptionerConfig, device_problem, precision_problem
from .backends.caption_settings import STOCK
from .sensors import LidarSettings, RadarSettings

IMAGE_TRANSPORTS = ("raw", "compressed")


def _param(default, description: str, *, dynamic: bool = False, choices=None, from_model: bool = False):
    return field(default=default, metadata={"description": description, "dynamic": dynamic, "choices": choices,
                                            "from_model": from_model})


class ParameterError(ValueError):
    """One or more parameter values are invalid; the message names each one."""


@dataclass(frozen=True)
class NodeParams:
    model: str = _param("Salesforce/blip-image-captioning-base",
                        "save_pretrained directory (weights + processor), a hub id already in the local cache, or a "
                        "blip-export directory (onnxruntime, openvino, tensorrt)")
    backend: str = _param("torch", "inference backend: torch, torch-cuda, onnxruntime, openvino or tensorrt; on a "
                          "CPU-only vehicle onnxruntime or openvino at fp32 (exact), openvino bf16 on CPUs with AMX "
                          "or onnxruntime int8 (approximate, fastest); see the README's performance section")
    engine_dir: str = _param("", "tensorrt: engine directory; empty = <model>/tensorrt")
    force_engine_update: bool = _param(False, "tensorrt: rebuild the engines from the ONNX files when they were "
                                       "built for another GPU or TensorRT version (takes minutes) instead of failing")
    device: str = _param("cpu", "cpu, cuda or cuda:N; backend openvino: OpenVINO device names cpu/CPU, GPU, GPU.N "
                         "(Intel GPU) or NPU")
    precision: str = _param("fp32", "fp32 (exact: the same captions on every backend), or an approximate mode: fp16 "
                            "(CUDA; openvino on GPU/NPU), bf16 (torch; openvino on CPUs with bf16 support: its vision "
                            "graph at bf16) or int8 (the export's int8/ graphs; onnxruntime, openvino)",
                            choices=PRECISIONS)
    allow_model_download: bool = _param(False, "fetch a hub id missing from the local HF cache from the hub; off, the "
                                        "node never touches the network")
    prompt: str = _param(STOCK.prompt, "text the caption starts from (stripped from the output); default: the "
                         "model's recorded prompt (caption_prompt.json), 'a picture of' for a model without one; may "
                         "be changed at runtime with `ros2 param set`", dynamic=True, from_model=True)
    max_new_tokens: int = _param(STOCK.max_new_tokens, "most tokens generated per caption; default: the model's "
                                 "generation_config.json, 20 for a model without one", from_model=True)
    num_beams: int = _param(STOCK.num_beams, "beam search width (1 = greedy); default: the model's "
                            "generation_config.json, 1 for a model without one", from_model=True)
    cameras: tuple[str, ...] = _param(("front",), "camera names; each subscribes <name>/image (or "
                                      "<name>/image/compressed) and publishes <name>/caption*")
    image_transport: str = _param("raw", "raw: sensor_msgs/Image on <cam>/image; compressed: "
                                  "sensor_msgs/CompressedImage (jpeg/png) on <cam>/image/compressed",
                                  choices=IMAGE_TRANSPORTS)
    lidar_topic: str = _param("lidar/points", "LiDAR PointCloud2 topic; empty disables LiDAR summaries")
    radar_topic: str = _param("radar/points", "radar PointCloud2 topic; empty disables radar summaries")
    max_sensor_offset_ms: float = _param(100.0, "largest |sensor stamp - image stamp| matched to a frame; a "
                                         "sensor further away in time is reported as null")
    sensor_buffer_s: float = _param(10.0, "seconds of sensor messages kept per topic for matching, whatever the "
                                    "sensor's rate (must cover the longest caption latency)")
    lidar_min_range_m: float = _param(0.1, "LiDAR returns closer than this are ignored (housing, ego vehicle, "
                                      "zero points of drivers without a return)")
    lidar_sector_min_deg: float = _param(-30.0, "forward sector, lower azimuth bound (REP-103: 0 = +x, + = left)")
    lidar_sector_max_deg: float = _param(30.0, "forward sector, upper azimuth bound (degrees)")
    radar_velocity_field: str = _param("", "radar radial velocity field; empty = first present of velocity, "
                                       "v_r, doppler, vx")
    radar_rcs_field: str = _param("rcs", "radar cross-section field (dBsm); reported as null when absent")
    max_rate_hz: float = _param(0.0, "most caption batches per second (0 = as fast as the model allows)")
    overlay: bool = _param(True, "publish <cam>/caption/image (built only while someone subscribes)")
    marker_distance_m: float = _param(4.0, "RViz text marker distance along the camera's optical axis (+z)")
    marker_text_height_m: float = _param(0.3, "RViz text marker height")
    marker_lifetime_s: float = _param(2.0, "RViz text marker lifetime (0 = until replaced)")
    stale_timeout_s: float = _param(3.0, "diagnostics: a camera or sensor silent this long is STALE/WARN")

    def __post_init__(self):
        problems = []
        for spec in fields(self):
            choices = spec.metadata["choices"]
            if choices and getattr(self, spec.name) not in choices:
                problems.append(f"{spec.name}={getattr(self, spec.name)!r} is not one of {', '.join(choices)}")
        if not self.cameras or any(not name or not name.replace("_", "").replace("/", "").isalnum()
                                   for name in self.cameras):
            problems.append(f"cameras={list(self.cameras)!r}: need at least one name of letters, digits, _ and /")
        if len(set(self.cameras)) != len(self.cameras):
            problems.append(f"cameras={list(self.cameras)!r} has duplicates")
        for name in ("max_sensor_offset_ms", "sensor_buffer_s", "marker_text_height_m", "stale_timeout_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_new_tokens", "num_beams"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lidar_min_range_m", "max_rate_hz", "marker_lifetime_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not -180 <= self.lidar_sector_min_deg < self.lidar_sector_max_deg <= 180:
            problems.append(f"lidar sector [{self.lidar_sector_min_deg}, {self.lidar_sector_max_deg}] deg must "
                            "satisfy -180 <= min < max <= 180")
        backend_problems = [device_problem(self.backend, self.device)]
        if self.precision in PRECISIONS:  # an unknown name is reported by the choices check above
            backend_problems.append(precision_problem(self.backend, self.precision))
        problems += [problem.replace(" ", "=", 1) for problem in backend_problems if problem]  # "device='x' ..."
        if problems:
            raise ParameterError("invalid parameters: " + "; ".join(problems))

    @classmethod
    def specs(cls):
        """(name, default, description, dynamic) of every parameter, in declaration order."""
        return [(spec.name, spec.default, spec.metadata["description"], spec.metadata["dynamic"])
                for spec in fields(cls)]

    @classmethod
    def from_model(cls) -> tuple[str, ...]:
        """Parameters whose default is what the model records (caption_settings): left out of config/caption.yaml,
        so a params file overrides them only where a user writes them."""
        return tuple(spec.name for spec in fields(cls) if spec.metadata["from_model"])

    def captioner_config(self) -> CaptionerConfig:
        return CaptionerConfig(model=self.model, backend=self.backend, device=self.device, precision=self.precision,
                               prompt=self.prompt, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                               engine_dir=self.engine_dir, force_engine_update=self.force_engine_update,
                               allow_download=self.allow_model_download)

    def lidar_settings(self) -> LidarSettings:
        return LidarSettings(self.lidar_sector_min_deg, self.lidar_sector_max_deg, self.lidar_min_range_m)

    def radar_settings(self) -> RadarSettings:
        return RadarSettings(self.radar_velocity_field, self.radar_rcs_field)
