"""The caption backends: the captioner interface and the registry, with one module per engine beside it.

The family: torch_backend (HF eager), torch_cuda_backend (static-KV CUDA graphs), onnx_backend (ONNX Runtime),
openvino_backend (OpenVINO Runtime: CPU, Intel GPU/NPU), tensorrt_backend; and what they share: decoding (caption(),
ids -> published text, greedy/beam over any step function), static_kv (the GPU backends' static cache and its
limits), kv_decoder (the static-KV decoder graph), pixels (frames -> pixel_values), engine_manifest (export schema and
hashes), model_loading / model_source (weights and processor from a directory or the local hub cache),
caption_settings (the prompt and length a checkpoint records), blip_export (what the onnxruntime and openvino
runtimes of an export share) and export_processor (an export's tokenizer and image settings without transformers).

The node, the offline bag captioner and the benchmarks only see `Captioner.caption(images)`; which engine runs the
model (torch, torch-cuda, ONNX Runtime, OpenVINO, TensorRT) is a string in `CaptionerConfig.backend`, resolved through
`BACKENDS`. Backends are imported lazily so a vehicle without, say, TensorRT never imports it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from .caption_settings import SETTINGS, CaptionSettings

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Backends that run an int8 export (blip-export --int8); the others refuse precision int8.
INT8_BACKENDS = ("onnxruntime", "openvino")
#: Device names per backend where they are not torch's cpu / cuda[:N] (OpenVINO names its own devices).
_OPENVINO_DEVICE = re.compile(r"^(cpu|gpu(\.\d+)?|npu)$", re.IGNORECASE)


def device_problem(backend: str, device: str) -> str:
    """Why `device` is not a device name `backend` understands ("" when it is); checked before anything loads.

    openvino takes OpenVINO's device names (cpu/CPU, GPU, GPU.N, NPU); every other backend torch's cpu or cuda[:N].
    Whether the device is present is the backend's check at load time.
    """
    if backend == "openvino":
        return "" if _OPENVINO_DEVICE.match(device) else (
            f"device {device!r} is not an OpenVINO device (cpu/CPU, GPU, GPU.N or NPU)")
    if device == "cpu" or re.fullmatch(r"cuda(:\d+)?", device):
        return ""
    return f"device {device!r} is neither cpu nor cuda[:N]" + (
        " (OpenVINO device names need backend openvino)" if _OPENVINO_DEVICE.match(device) else "")


def precision_problem(backend: str, precision: str) -> str:
    """Why `precision` is not a precision name `backend` accepts ("" when it is); device-specific limits (fp16 on a
    CPU, bf16 without bf16 hardware) are the backend's check at load time."""
    if precision not in PRECISIONS:
        return f"precision {precision!r} is not one of {', '.join(PRECISIONS)}"
    if precision == "int8" and backend not in INT8_BACKENDS:
        return f"precision 'int8' (an int8 export) runs on the {' and '.join(INT8_BACKENDS)} backends, not {backend!r}"
    return ""


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """An exception's message as one line (runtimes and transformers raise pages of text): its first line, after
    `Type: ` when `with_type`; the type's name when the message is empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]


def reraise_interrupt(exc: ImportError) -> None:
    """Raise the interrupt behind a failed import, if one is: a signal handler's exception (StartInterrupted,
    KeyboardInterrupt: not an Exception) raised while a C extension initialises comes out as ImportError
    ("initialization failed", pybind11) with the interrupt as its cause. A stop during start-up must stay a stop, not
    become "the backend is not installed"."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if not isinstance(cause, Exception):
            raise cause.with_traceback(None) from None
        cause = cause.__cause__ or cause.__context__


class ModelLoadError(RuntimeError):
    """The caption model (or its backend) cannot be loaded; the message names the model and the reason."""

    def __init__(self, model: str, reason: str):
        self.model = model
        self.reason = " ".join(str(reason).split())  # one line: transformers' messages span several
        super().__init__(f"cannot load caption model {model!r}: {self.reason}")


@dataclass(frozen=True)
class CaptionerConfig:
    """What to load and how to decode."""

    model: str
    """A save_pretrained directory (weights + processor) or a hub id already in the local cache."""
    backend: str = "torch"
    device: str = "cpu"
    """"cpu", "cuda" or "cuda:N"; openvino: cpu/CPU, GPU, GPU.N or NPU (see device_problem)."""
    precision: str = "fp32"
    """fp32 (exact), fp16 (CUDA; openvino on GPU/NPU), bf16 (torch, openvino) or int8 (an int8 export: onnxruntime,
    openvino); all but fp32 are approximate."""
    prompt: str | None = None
    """Text the caption is conditioned on (e.g. "a picture of"); stripped from the returned captions.
    None (also for max_new_tokens and num_beams): what the model records (caption_settings.model_caption_settings),
    which the backend reads once it has loaded (and verified) the model, and fills in with `filled_from`: a loaded
    captioner's `config` always has values."""
    max_new_tokens: int | None = None
    num_beams: int | None = None
    allow_download: bool = False
    """A hub id missing from the local HF cache is fetched from the hub; off, nothing touches the network."""
    engine_dir: str = ""
    """tensorrt: where the engines are; empty = `<model>/tensorrt`."""
    force_engine_update: bool = False
    """tensorrt: rebuild engines built for another GPU or TensorRT version from the ONNX files instead of failing."""

    def __post_init__(self):
        problems = []
        if not self.model:
            problems.append("model is empty")
        problems += [problem for problem in (precision_problem(self.backend, self.precision),
                                             device_problem(self.backend, self.device)) if problem]
        for name in ("max_new_tokens", "num_beams"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))

    def filled_from(self, recorded: CaptionSettings) -> CaptionerConfig:
        """This config with every caption setting left None taken from what the model records."""
        return replace(self, **{name: getattr(recorded, name) for name in SETTINGS if getattr(self, name) is None})

    @property
    def device_index(self) -> int:
        """The N of "cuda:N" (0 for "cuda" and "cpu"): the one place a backend reads the GPU number from."""
        return int(self.device.partition(":")[2] or 0)


@runtime_checkable
class Captioner(Protocol):
    """Captions a batch of RGB uint8 images (H, W, 3), e.g. one frame per camera, in one call."""

    backend: str
    model_name: str
    settings: CaptionSettings
    """The caption settings the loaded model records (read once it was verified); `config` is filled from them."""

    def caption(self, images: Sequence[np.ndarray], prompt: str | None = None) -> list[str]:
        """One caption per image, without the prompt; `prompt` overrides the configured one for this call."""
        ...


CaptionerFactory = Callable[[CaptionerConfig], Captioner]

#: backend name -> factory, or "module:attribute" of a factory imported on first use.
BACKENDS: dict[str, CaptionerFactory | str] = {
    "torch": "blip_caption_ros.backends.torch_backend:TorchCaptioner",
    "onnxruntime": "blip_caption_ros.backends.onnx_backend:OnnxCaptioner",
    "openvino": "blip_caption_ros.backends.openvino_backend:OpenVinoCaptioner",
    "tensorrt": "blip_caption_ros.backends.tensorrt_backend:TensorRTCaptioner",
    "torch-cuda": "blip_caption_ros.backends.torch_cuda_backend:TorchCudaCaptioner",
}


def register_backend(name: str, factory: CaptionerFactory | str) -> None:
    """Make `backend: name` loadable (backends outside this package, benchmarks' stand-in models)."""
    BACKENDS[name] = factory


def load_captioner(config: CaptionerConfig) -> Captioner:
    """The captioner `config.backend` builds; raises ModelLoadError with a one-line reason on any failure to load."""
    factory = BACKENDS.get(config.backend)
    if factory is None:
        raise ModelLoadError(
            config.model, f"unknown backend {config.backend!r}; available: {', '.join(sorted(BACKENDS))}"
        )
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except ImportError as exc:
            raise ModelLoadError(config.model, f"backend {config.backend!r} is not installed ({exc})") from exc
    return factory(config)
