"""The OpenVINO backend: runs a `blip-export` directory (the same ONNX graphs onnxruntime runs) on OpenVINO Runtime.

For x86 vehicles without an NVIDIA GPU: the same export runs on OpenVINO's CPU plugin (exact fp32 about as fast
as onnxruntime on the 2-core test machines; bf16 the fastest OpenVINO mode on CPUs with AMX; see the README's
performance section) and on an Intel GPU or NPU (`device` GPU, GPU.N, NPU; cpu or CPU for the processor), which
onnxruntime's CPU build cannot use. No second export path: OpenVINO reads vision.onnx and decoder.split.onnx
(decoder.onnx for older exports) directly; the export plumbing (manifest check, int8 choice, processor, KV cache,
generate loop) is blip_export's, shared with onnxruntime.

Precision:
- fp32: exact (`generate`'s greedy ids). OpenVINO's CPU plugin runs bf16 by default on CPUs with AVX512_BF16/AMX,
  which silently changes captions, so fp32 pins `INFERENCE_PRECISION_HINT` to f32.
- bf16 (CPU) / fp16 (GPU, NPU): approximate, the fp32 graphs at OpenVINO's reduced inference precision. On the CPU
  only the vision graph runs at bf16: it is compute-bound (~125 GFLOP an image), and bf16 (AMX/AVX512_BF16) ran it
  2.4x faster than f32 on the AMX test machine (356 vs 843 ms), while the one-token decoder step is memory-bound and
  ran slower at bf16 (43.7 vs 34.4 ms: OpenVINO's AMX bf16 matrix-vector kernels read the weights at ~9 GB/s, its
  f32 ones at ~17), so the decoder stays at f32.
- int8: approximate, the export's dynamic-int8 graphs (`blip-export --int8`, the `int8/` subdirectory; `model` may
  name either the export or its int8/ directly). OpenVINO runs these onnxruntime-style graphs (MatMulInteger)
  slower than its own fp32 (0.89x of torch eager at batch 1 on the AMX machine); onnxruntime int8 is the fast int8.
"""

from __future__ import annotations

import logging

import numpy as np

from . import CaptionerConfig, ModelLoadError, first_line, reraise_interrupt
from .blip_export import SPLIT_DECODER, ExportCaptioner, KVCacheState, cross_feeds, decoder_graph, open_export

log = logging.getLogger(__name__)

#: precision -> OpenVINO inference precision of the fp32 graphs; int8 runs the int8 export at f32.
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def openvino_device(device: str) -> str:
    """The OpenVINO name of a `device` parameter: cpu -> CPU, gpu.1 -> GPU.1."""
    return device.upper()


class OpenVinoCaptioner(ExportCaptioner):
    backend = "openvino"

    def __init__(self, config: CaptionerConfig, verify: bool = True, threads: int = 0, split_cross: bool = True):
        """`threads` (0 = OpenVINO's choice) is for benchmarks; the node uses the default."""
        try:
            import openvino as ov
        except ImportError as exc:
            reraise_interrupt(exc)
            raise ModelLoadError(config.model, f"the openvino backend needs openvino ({exc}); "
                                 "install the package's [openvino] extra") from exc
        export = open_export(config, self.backend, verify)
        if export.int8 and config.precision != "int8":
            raise ModelLoadError(config.model, f"precision {config.precision!r} on an int8 export: set precision "
                                 "int8 (approximate) or point model at the fp32 export")
        self._adopt(config, export)
        self.device = openvino_device(config.device)
        core = ov.Core()
        available = core.available_devices
        if not any(name == self.device or name.startswith(self.device + ".") for name in available):
            raise ModelLoadError(config.model, f"device {config.device!r}: OpenVINO finds no such device here "
                                 f"(available: {', '.join(available) or 'none'})")
        self.inference_precision = _INFERENCE_PRECISION[config.precision]
        precision_problem = _precision_problem(core, self.device, config.precision)
        if precision_problem:
            raise ModelLoadError(config.model, precision_problem)
        self.exact = config.precision == "fp32"
        if not self.exact:
            log.warning("openvino precision %s is approximate: captions can differ from fp32's", config.precision)
        self.graph_precision = graph_precisions(self.device, self.inference_precision)
        properties = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        decoder = decoder_graph(self.manifest, split_cross)
        self.split_cross = decoder == SPLIT_DECODER
        self.compiled = {}
        for name, graph in (("vision", "vision"), ("decoder", decoder)):
            path = export.graph_path(graph)
            graph_properties = {"INFERENCE_PRECISION_HINT": self.graph_precision[name], **properties}
            try:
                self.compiled[name] = core.compile_model(core.read_model(str(path)), self.device, graph_properties)
            except RuntimeError as exc:  # openvino's errors are RuntimeErrors with pages of text
                raise ModelLoadError(config.model, f"openvino cannot load {path.name}: {first_line(exc)}") from exc
        self.requests = {name: compiled.create_infer_request() for name, compiled in self.compiled.items()}
        self._ov = ov

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """cross_kv [layers, 2, batch, heads, image tokens, head_dim] of preprocessed images (a copy: the request's
        output buffer is reused by the next call)."""
        request = self.requests["vision"]
        request.infer({"pixel_values": np.ascontiguousarray(pixels, np.float32)}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()

    def decoder_state(self, cross_kv: np.ndarray) -> KVCacheState:
        """The image keys/values are bound to the request once per caption (in place), not fed per token."""
        request = self.requests["decoder"]
        for name, array in cross_feeds(cross_kv, self.split_cross).items():
            request.set_tensor(name, self._ov.Tensor(array, shared_memory=True))

        def run(inputs):
            request.infer(inputs, share_inputs=True)
            # copies: the request reuses its output buffers on the next step
            return request.get_tensor("logits").data.copy(), request.get_tensor("new_kv").data.copy()

        return KVCacheState(run, cross_kv)


def graph_precisions(device: str, inference_precision: str) -> dict[str, str]:
    """OpenVINO inference precision of each graph: the decoder stays f32 on the CPU (see the module docstring)."""
    return {"vision": inference_precision, "decoder": "f32" if device == "CPU" else inference_precision}


def _precision_problem(core, device: str, precision: str) -> str:
    """Why `device` cannot run `precision` (or ""), from the plugin's OPTIMIZATION_CAPABILITIES."""
    wanted = {"bf16": "BF16", "fp16": "FP16"}.get(precision)
    if wanted is None:
        return ""
    capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    if wanted not in capabilities:
        return (f"precision {precision!r}: OpenVINO's {device} plugin here has no {wanted} support "
                f"(capabilities: {', '.join(capabilities)}); use fp32 (exact) or int8")
    return ""
