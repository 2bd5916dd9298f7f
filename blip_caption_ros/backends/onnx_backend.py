"""The ONNX Runtime backend: runs a `blip-export` directory (vision.onnx + decoder.onnx with a KV cache).

`model` is the export directory. Its manifest is checked before anything is loaded (every file's sha256, so a
truncated copy or a file from another export is refused with a ModelLoadError). On the CPU it uses the CPU execution
provider; with device cuda[:N] the TensorRT and CUDA execution providers where onnxruntime-gpu has them. An fp32
export gives `generate`'s greedy ids exactly; an int8 export (`blip-export --int8`, the `int8/` subdirectory, which
precision int8 picks; `model` may also name it directly) is approximate and faster.

The export plumbing (verified manifest, processor, KV cache, generate loop) is blip_export's, shared with OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CaptionerConfig, ModelLoadError, first_line, reraise_interrupt
from .blip_export import SPLIT_DECODER, ExportCaptioner, KVCacheState, cross_feeds, decoder_graph, open_export


class OnnxCaptioner(ExportCaptioner):
    backend = "onnxruntime"

    def __init__(self, config: CaptionerConfig, verify: bool = True, split_cross: bool = True, threads: int = 0):
        """`threads`: intra-op threads (0 = onnxruntime's choice; the latency benchmark sets it)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            reraise_interrupt(exc)
            raise ModelLoadError(config.model, f"the onnxruntime backend needs onnxruntime ({exc}); install the "
                                 "package's [onnx] extra") from exc
        if not Path(config.model).is_dir():
            raise ModelLoadError(config.model, "no such directory (the onnxruntime backend loads a blip-export dir)")
        providers, precision_problem = _providers(ort, config)
        if precision_problem:
            raise ModelLoadError(config.model, precision_problem)
        export = open_export(config, self.backend, verify)
        self._adopt(config, export)
        options = session_options(ort, threads)
        # The split-cross decoder reads each layer's image keys/values in place; older exports only have decoder.onnx,
        # whose cross_kv input is sliced (copied) inside the graph on every token. split_cross=False forces decoder.onnx
        # (the latency benchmark compares both).
        decoder = decoder_graph(self.manifest, split_cross)
        self.split_cross = decoder == SPLIT_DECODER
        self.sessions = {}
        for name, graph in (("vision", "vision"), ("decoder", decoder)):
            path = export.graph_path(graph)
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
                raise ModelLoadError(config.model, f"onnxruntime cannot load {path.name}: {first_line(exc)}") from exc
        self.providers = self.sessions["decoder"].get_providers()

    @classmethod
    def from_export_dir(cls, export_dir, verify: bool = True, device: str = "cpu", split_cross: bool = True,
                        **config) -> OnnxCaptioner:
        return cls(CaptionerConfig(model=str(export_dir), backend="onnxruntime", device=device, **config),
                   verify=verify, split_cross=split_cross)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self.sessions["vision"].run(None, {"pixel_values": np.ascontiguousarray(pixels, np.float32)})[0]

    def decoder_state(self, cross_kv: np.ndarray) -> KVCacheState:
        feeds = cross_feeds(cross_kv, self.split_cross)
        session = self.sessions["decoder"]
        return KVCacheState(lambda inputs: session.run(None, inputs | feeds), cross_kv)


def session_options(ort, threads: int = 0):
    """The SessionOptions of every ONNX Runtime session of the project (this backend and blip-export's checks);
    `threads` intra-op threads, 0 = onnxruntime's choice."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # ORT's worker threads busy-wait by default, which slows torch (and the node) 3x in the same process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _providers(ort, config: CaptionerConfig) -> tuple[list, str]:
    """Execution providers for config.device, and a reason the precision cannot be honoured (or "")."""
    if config.device == "cpu":
        if config.precision not in ("fp32", "int8"):
            return [], (f"precision {config.precision!r}: the onnxruntime backend runs the exported fp32 graphs on "
                        "the CPU, or with precision int8 the int8 export (or the torch/openvino backends for bf16)")
        return ["CPUExecutionProvider"], ""
    device_id = config.device_index
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return [], (f"device {config.device!r}: this onnxruntime has no CUDA execution provider "
                    f"(available: {', '.join(available)}); install onnxruntime-gpu")
    if config.precision == "bf16":
        return [], "precision 'bf16' is not supported by the onnxruntime backend; use fp32 or fp16"
    providers = []
    if "TensorrtExecutionProvider" in available:
        providers.append(("TensorrtExecutionProvider", {"device_id": device_id,
                                                        "trt_fp16_enable": config.precision == "fp16"}))
    elif config.precision == "fp16":
        return [], "precision 'fp16' needs onnxruntime's TensorRT execution provider (or the tensorrt backend)"
    providers += [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return providers, ""
