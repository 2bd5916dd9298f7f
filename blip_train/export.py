"""blip-export: a fine-tuned BLIP checkpoint -> parity-checked ONNX graphs (+ int8, + TensorRT engines).

    blip-export --checkpoint runs/train/best --out runs/export            # vision + KV-cache decoder, fp32
    blip-export --checkpoint runs/train/best --out runs/export --int8     # + runs/export/int8 (approximate)
    blip-export --out runs/export --tensorrt-only --max-batch 6           # engines on the vehicle, from the ONNX

Three graphs (see blip_caption_ros.backends.kv_decoder): `vision.onnx` (image -> every decoder layer's
cross-attention keys/values), `decoder.onnx` (new tokens + KV cache -> last logits + the new tokens' keys/values),
dynamic in batch (cameras x beams), new tokens and cached length, so one decoder graph serves both the prompt and every
step, and `decoder.split.onnx`, the same decoder derived with one cross key/value input per layer (ONNX Runtime).

Every export is validated against PyTorch before it is published, as optimum's validate_model_outputs does: output
names, shapes (at a batch size and lengths other than the traced ones), values within `--atol`, and greedy ids
identical to `generate` on sample images with and without a prompt. The directory is written under a temporary name
and renamed only when every check passed, so a failed export leaves nothing that looks valid.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blip_caption_ros.backends import first_line
from blip_caption_ros.backends.blip_export import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    SPLIT_DECODER,
    VISION_INPUTS,
    VISION_OUTPUTS,
    split_decoder_inputs,
)
from blip_caption_ros.backends.caption_settings import (
    PROMPT_FILE,
    SETTINGS,
    STOCK,
    CaptionSettingsError,
    model_caption_settings,
)
from blip_caption_ros.backends.engine_manifest import (
    ENGINE_DIR,
    ONNX_FORMAT,
    ONNX_MANIFEST,
    PROCESSOR_FILES,
    file_hashes,
    load_export_manifest,
    staged_directory,
    write_json_atomic,
)
from blip_caption_ros.backends.static_kv import MAX_BATCH, MAX_PROMPT_TOKENS

OPSET = 18
#: Graph files of an export directory.
GRAPH_FILES = {"vision": "vision.onnx", "decoder": "decoder.onnx", SPLIT_DECODER: "decoder.split.onnx"}
#: Generation settings the ONNX/TensorRT decoding loop does not implement; an export refuses checkpoints using them.
UNSUPPORTED_GENERATION = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
                          "forced_bos_token_id": None, "forced_eos_token_id": None, "suppress_tokens": None,
                          "begin_suppress_tokens": None, "do_sample": False, "length_penalty": 1.0}


class ExportError(RuntimeError):
    """The export cannot be made (bad checkpoint, unsupported settings, missing tools)."""


class ParityError(ExportError):
    """An exported graph disagrees with PyTorch: the message names the graph, the output and the difference."""


@dataclass(frozen=True)
class ExportOptions:
    checkpoint: str
    out: str
    atol: float = 1e-4
    """Largest |onnx - torch| allowed on every output (fp32)."""
    samples: int = 4
    """Sample images for the greedy-ids check (synthetic unless `images` is given)."""
    images: str = ""
    max_new_tokens: int = 20
    int8: bool = False
    overwrite: bool = False


# ----------------------------------------------------------------------------------------------------------------
# torch side


def load_checkpoint(checkpoint: str):
    import transformers

    from blip_train.checkpoint import CheckpointError, load_blip

    if not Path(checkpoint).is_dir():
        raise ExportError(f"checkpoint {checkpoint!r} is not a directory (a save_pretrained dir with a processor)")
    transformers.utils.logging.disable_progress_bar()
    try:
        model, processor = load_blip(checkpoint, what="checkpoint", dtype="float32")
    except CheckpointError as exc:
        raise ExportError(f"cannot load checkpoint {checkpoint!r}: {exc}") from None
    model = model.eval()
    generation = model.generation_config
    unsupported = [f"{name}={getattr(generation, name)!r}" for name, default in UNSUPPORTED_GENERATION.items()
                   if getattr(generation, name, None) not in (default, None, [], ())]
    if unsupported:
        raise ExportError(f"checkpoint {checkpoint!r} generation_config sets {', '.join(unsupported)}, which the "
                          "exported runtimes do not implement; remove them from generation_config.json")
    return model, processor


def sample_images(count: int, images_dir: str = "") -> list[np.ndarray]:
    """`count` RGB images: the first files of `images_dir`, else deterministic synthetic scenes (sky, road, boxes)."""
    if images_dir:
        from PIL import Image

        files = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise ExportError(f"--images {images_dir!r} has no .jpg/.png files")
        return [np.asarray(Image.open(f).convert("RGB")) for f in files[:count]]
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        height, width = 240, 320
        image = np.empty((height, width, 3), np.uint8)
        image[: height // 2] = rng.integers(80, 255, 3)
        image[height // 2:] = rng.integers(20, 120, 3)
        for _ in range(rng.integers(2, 6)):
            y, x = rng.integers(height // 3, height - 20), rng.integers(0, width - 40)
            image[y: y + rng.integers(10, 40), x: x + rng.integers(20, 80)] = rng.integers(0, 255, 3)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        images.append(image)
    return images


def bos_prompt_ids(model, processor, prompt: str, batch: int):
    from blip_caption_ros.backends.decoding import start_ids

    return start_ids(processor.tokenizer, prompt, model.config.text_config.bos_token_id, batch)


def export_graphs(model, out_dir: Path) -> dict:
    """torch.onnx.export (dynamo, opset 18) of vision and decoder into out_dir; returns their manifest section."""
    import torch
    from torch.export import Dim

    from blip_caption_ros.backends.kv_decoder import KVDecoder, VisionCrossKV, cache_shape

    vision, decoder = VisionCrossKV(model).eval(), KVDecoder(model).eval()
    image_size = model.config.vision_config.image_size
    max_pos = model.config.text_config.max_position_embeddings
    batch = Dim("batch", min=1, max=256)
    new = Dim("new_tokens", min=1, max=max_pos)
    past = Dim("past_tokens", min=1, max=max_pos)
    # Example sizes >= 2 everywhere: the exporter specialises 0/1-sized example dims to constants.
    pixels = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        cross_kv = vision(pixels)
    ids = torch.tensor([[model.config.text_config.bos_token_id, 5, 6], [model.config.text_config.bos_token_id, 7, 8]])
    decoder_args = (ids, torch.arange(2, 5).expand(2, 3).contiguous(), torch.ones(2, 2, dtype=torch.long),
                    torch.randn(cache_shape(model, 2, 2)) * 0.1, cross_kv)
    graphs = {
        "vision": dict(module=vision, args=(pixels,), inputs=VISION_INPUTS, outputs=VISION_OUTPUTS,
                       dynamic={"pixel_values": {0: batch}},
                       axes={"pixel_values": {"0": "batch"}, "cross_kv": {"2": "batch"}}),
        "decoder": dict(module=decoder, args=decoder_args, inputs=DECODER_INPUTS, outputs=DECODER_OUTPUTS,
                        dynamic={"input_ids": {0: batch, 1: new}, "position_ids": {0: batch, 1: new},
                                 "past_mask": {0: batch, 1: past}, "past_kv": {2: batch, 4: past},
                                 "cross_kv": {2: batch}},
                        axes={"input_ids": {"0": "batch", "1": "new_tokens"},
                              "position_ids": {"0": "batch", "1": "new_tokens"},
                              "past_mask": {"0": "batch", "1": "past_tokens"},
                              "past_kv": {"2": "batch", "4": "past_tokens"}, "cross_kv": {"2": "batch"},
                              "logits": {"0": "batch"}, "new_kv": {"2": "batch", "4": "new_tokens"}}),
    }
    section = {}
    warnings.filterwarnings("ignore", module=r"torch\.onnx.*")  # per-export chatter about axis names
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
    for name, spec in graphs.items():
        path = out_dir / f"{name}.onnx"
        started = time.monotonic()
        with torch.no_grad():
            program = torch.onnx.export(
                spec["module"], spec["args"], dynamo=True, opset_version=OPSET, input_names=list(spec["inputs"]),
                output_names=list(spec["outputs"]), dynamic_shapes=spec["dynamic"], optimize=True, verbose=False)
        program.save(str(path))
        section[name] = {"file": path.name, "inputs": list(spec["inputs"]), "outputs": list(spec["outputs"]),
                         "dynamic_axes": spec["axes"], "export_s": round(time.monotonic() - started, 1)}
        print(f"exported {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {section[name]['export_s']} s",
              file=sys.stderr)
    return section


def split_cross_kv(decoder_path: Path, out_path: Path, layers: int) -> list[str]:
    """decoder.onnx -> the ONNX Runtime flavour (kv_decoder.SPLIT_DECODER): cross_kv[l, k] becomes input cross_k_l /
    cross_v_l. ONNX has no views, so the original graph's Gather(cross_kv, l) copies every layer's image keys/values
    (85 MB a row for BLIP-base) on every token; fed per layer, onnxruntime reads the caller's buffers in place.
    The rewrite only renames tensors (same weights, same arithmetic); returns the new graph's input names."""
    import onnx
    from onnx import numpy_helper

    from blip_caption_ros.backends.blip_export import split_decoder_inputs

    model = onnx.load(str(decoder_path))
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def scalar_gather(node) -> int | None:
        """The index of a Gather(axis 0) by a constant scalar, else None."""
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        index = constants.get(node.input[1])
        if node.op_type != "Gather" or axis != 0 or index is None or index.ndim != 0:
            return None
        return int(index)

    renamed, dropped = {}, set()
    for first in consumers.get("cross_kv", []):
        layer = scalar_gather(first)
        if layer is None or not 0 <= layer < layers:
            raise ExportError(f"{decoder_path.name}: cross_kv is read by {first.op_type} {first.name!r}, not by a "
                              "per-layer Gather; cannot derive the split-cross decoder")
        for second in consumers.get(first.output[0], []):
            kind = scalar_gather(second)
            if kind not in (0, 1) or second.output[0] in renamed:
                raise ExportError(f"{decoder_path.name}: unexpected {second.op_type} {second.name!r} after the "
                                  f"cross_kv Gather of layer {layer}")
            renamed[second.output[0]] = f"cross_{'kv'[kind]}_{layer}"
            dropped.add(id(second))
        dropped.add(id(first))
    if sorted(renamed.values()) != sorted(split_decoder_inputs(layers)[4:]):
        raise ExportError(f"{decoder_path.name}: found cross-attention inputs {sorted(renamed.values())}, expected "
                          f"key and value of {layers} layers")
    kept = [n for n in graph.node if id(n) not in dropped]
    for node in kept:
        for position, name in enumerate(node.input):
            if name in renamed:
                node.input[position] = renamed[name]
    del graph.node[:]
    graph.node.extend(kept)
    cross = next(i for i in graph.input if i.name == "cross_kv")
    dims = list(cross.type.tensor_type.shape.dim)[2:]  # [batch, heads, image tokens, head_dim]
    new_inputs = [i for i in graph.input if i.name != "cross_kv"]
    for name in split_decoder_inputs(layers)[4:]:
        value = onnx.helper.make_tensor_value_info(name, cross.type.tensor_type.elem_type, [None] * len(dims))
        for dim, source in zip(value.type.tensor_type.shape.dim, dims, strict=True):
            dim.CopyFrom(source)
        new_inputs.append(value)
    del graph.input[:]
    graph.input.extend(new_inputs)
    stale = [v for v in graph.value_info if v.name in renamed]
    for value in stale:
        graph.value_info.remove(value)
    onnx.save(model, str(out_path))
    return [i.name for i in graph.input]


def derive_split_decoder(out_dir: Path, model, decoder_section: dict) -> dict:
    """Writes out_dir/decoder.split.onnx from out_dir/decoder.onnx; returns its manifest section."""
    started = time.monotonic()
    path = out_dir / GRAPH_FILES[SPLIT_DECODER]
    inputs = split_cross_kv(out_dir / GRAPH_FILES["decoder"], path, model.config.text_config.num_hidden_layers)
    axes = {k: v for k, v in decoder_section["dynamic_axes"].items() if k != "cross_kv"}
    axes.update({name: {"0": "batch"} for name in inputs[len(DECODER_INPUTS) - 1:]})
    return {"file": path.name, "inputs": inputs, "outputs": list(DECODER_OUTPUTS), "dynamic_axes": axes,
            "derived_from": GRAPH_FILES["decoder"], "export_s": round(time.monotonic() - started, 1)}


# ----------------------------------------------------------------------------------------------------------------
# validation


def _ort_session(path: Path):
    import onnxruntime as ort

    from blip_caption_ros.backends.onnx_backend import session_options

    try:
        return ort.InferenceSession(str(path), session_options(ort), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ExportError(f"onnxruntime cannot load {path}: {first_line(exc)}") from exc


def validate_outputs(model, export_dir: Path, atol: float) -> dict:
    """Names, shapes and values of every graph against PyTorch at sizes other than the traced ones."""
    import torch

    from blip_caption_ros.backends.kv_decoder import KVDecoder, VisionCrossKV, cache_shape

    generator = torch.Generator().manual_seed(1)
    size = model.config.vision_config.image_size
    pixels = torch.randn(3, 3, size, size, generator=generator)
    vision, decoder = VisionCrossKV(model).eval(), KVDecoder(model).eval()
    vocab = model.config.text_config.vocab_size
    with torch.no_grad():
        cross_kv = vision(pixels)
        ids = torch.randint(0, vocab, (3, 4), generator=generator)
        past = torch.randn(cache_shape(model, 3, 5), generator=generator) * 0.5
        mask = torch.ones(3, 5, dtype=torch.long)
        mask[1, :2] = 0
        decoder_inputs = (ids, torch.arange(5, 9).expand(3, 4).contiguous(), mask, past, cross_kv)
        references = {"vision": ((pixels,), vision(pixels)), "decoder": (decoder_inputs, decoder(*decoder_inputs))}
    layers = model.config.text_config.num_hidden_layers
    split_inputs = (*decoder_inputs[:-1], *(cross_kv[layer, kind] for layer in range(layers) for kind in (0, 1)))
    references[SPLIT_DECODER] = (split_inputs, references["decoder"][1])
    interfaces = {"vision": (VISION_INPUTS, VISION_OUTPUTS), "decoder": (DECODER_INPUTS, DECODER_OUTPUTS),
                  SPLIT_DECODER: (split_decoder_inputs(layers), DECODER_OUTPUTS)}
    results = {}
    for name, (inputs, expected) in references.items():
        session = _ort_session(export_dir / GRAPH_FILES[name])
        input_names = [i.name for i in session.get_inputs()]
        output_names = [o.name for o in session.get_outputs()]
        want_inputs, want_outputs = (list(names) for names in interfaces[name])
        if input_names != want_inputs or output_names != want_outputs:
            raise ParityError(f"{GRAPH_FILES[name]} has inputs {input_names} and outputs {output_names}, expected "
                              f"{want_inputs} and {want_outputs}")
        got = session.run(None, {n: t.numpy() for n, t in zip(input_names, inputs, strict=True)})
        expected = expected if isinstance(expected, tuple) else (expected,)
        results[name] = {}
        for out_name, value, reference in zip(output_names, got, expected, strict=True):
            reference = reference.numpy()
            if value.shape != reference.shape:
                raise ParityError(f"{GRAPH_FILES[name]} output {out_name} has shape {list(value.shape)}, PyTorch "
                                  f"{list(reference.shape)}")
            diff = float(np.max(np.abs(value - reference)))
            if not diff <= atol:  # also catches NaN
                raise ParityError(f"{GRAPH_FILES[name]} output {out_name} differs from PyTorch by {diff:.3g} > "
                                  f"atol {atol:g}")
            results[name][out_name] = {"shape": list(value.shape), "max_abs_diff": diff}
    return results


def validate_greedy_ids(model, processor, export_dir: Path, images, max_new_tokens: int, exact: bool = True) -> dict:
    """`generate`'s greedy ids vs the ONNX graphs' on `images`, without and with a prompt.

    exact: raise ParityError on any difference (fp32); otherwise only measure token agreement (int8).
    """
    import torch

    from blip_caption_ros.backends.onnx_backend import OnnxCaptioner

    pixels = processor(images=images, return_tensors="pt").pixel_values
    runner = OnnxCaptioner.from_export_dir(export_dir, verify=False)
    results = {}
    for prompt in ("", "a picture of"):
        start = bos_prompt_ids(model, processor, prompt, len(images))
        with torch.inference_mode():
            kwargs = {"input_ids": processor.tokenizer([prompt] * len(images), return_tensors="pt").input_ids} \
                if prompt else {}
            expected = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, **kwargs)
        got = torch.from_numpy(runner.generate_ids(pixels.numpy(), start, max_new_tokens=max_new_tokens))
        agreement = token_agreement(expected, got)
        results[prompt or "<none>"] = {"images": len(images), "identical": bool(torch.equal(expected, got)),
                                       "token_agreement": agreement}
        if exact and not torch.equal(expected, got):
            raise ParityError(f"greedy ids differ from generate (prompt {prompt!r}, token agreement "
                              f"{agreement:.1%}): first sample torch {expected[0].tolist()} onnx {got[0].tolist()}")
    return results


def token_agreement(reference, candidate) -> float:
    """Share of positions (over the reference's length, padding included) where both id sequences agree."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    width = max(reference.shape[1], candidate.shape[1])

    def pad(a):
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1)

    return float(np.mean(pad(reference) == pad(candidate)))


# ----------------------------------------------------------------------------------------------------------------
# manifest and the export itself


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]}


def _model_section(model, checkpoint: str) -> dict:
    text, vision = model.config.text_config, model.config.vision_config
    return {"checkpoint": str(Path(checkpoint).resolve()), "image_size": vision.image_size,
            "patch_size": vision.patch_size, "image_tokens": (vision.image_size // vision.patch_size) ** 2 + 1,
            "text_layers": text.num_hidden_layers, "text_heads": text.num_attention_heads,
            "text_hidden": text.hidden_size, "vocab_size": text.vocab_size,
            "max_position_embeddings": text.max_position_embeddings}


def write_manifest(out_dir: Path, graphs: dict, processor_files: list[str], model, checkpoint: str, parity: dict,
                   variant: str) -> dict:
    """The export's manifest (engine_manifest's schema): graphs, the processor files, shapes, and every file's hash."""
    text = model.config.text_config
    model_section = _model_section(model, checkpoint)
    manifest = {
        "format": ONNX_FORMAT, "variant": variant, "exact": variant == "fp32", "opset": OPSET,
        "graphs": graphs, "processor_files": sorted(processor_files), "model": model_section,
        "shapes": {"cross_kv": ["layers", 2, "batch", "heads", model_section["image_tokens"], "head_dim"]},
        "tokens": {"bos": text.bos_token_id, "sep": text.sep_token_id, "eos": text.sep_token_id,
                   "pad": text.pad_token_id},
        "versions": _versions(), "parity": parity,
        "caption": _caption_section(checkpoint),
        "files": file_hashes(out_dir, [p.name for p in out_dir.iterdir() if p.is_file() and p.name != ONNX_MANIFEST]),
    }
    write_json_atomic(out_dir / ONNX_MANIFEST, manifest)
    return manifest


def _caption_section(checkpoint: str) -> dict:
    """How the export captions by default: the checkpoint's recorded prompt and generation settings (copied beside
    the graphs as caption_prompt.json and generation_config.json, which the backends read)."""
    settings = model_caption_settings(checkpoint)
    recorded = (Path(checkpoint) / PROMPT_FILE).is_file()
    return {name: getattr(settings, name) for name in SETTINGS} | {"recorded": recorded}


def _copy_processor_files(checkpoint: str, out_dir: Path) -> list[str]:
    """Copies whichever processor files the checkpoint has next to the graphs; returns their names."""
    copied = [name for name in PROCESSOR_FILES if (Path(checkpoint) / name).is_file()]
    for name in copied:
        shutil.copy2(Path(checkpoint) / name, out_dir / name)
    return copied


def quantize_int8(model, processor, fp32_dir: Path, out_dir: Path, checkpoint: str, images,
                  max_new_tokens: int) -> dict:
    """Dynamic int8 (weights int8, activations quantised on the fly) of every graph; approximate, so parity is
    measured (token agreement with generate) rather than required."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir()
    graphs = load_export_manifest(fp32_dir, verify=False)["graphs"]
    for graph in graphs.values():  # vision, decoder, split-cross decoder
        quantize_dynamic(fp32_dir / graph["file"], out_dir / graph["file"], weight_type=QuantType.QInt8,
                         per_channel=True, extra_options={"MatMulConstBOnly": True})
    processor_files = _copy_processor_files(checkpoint, out_dir)
    write_manifest(out_dir, graphs, processor_files, model, checkpoint, {}, variant="int8-dynamic")  # runner reads it
    parity = {"greedy_ids": validate_greedy_ids(model, processor, out_dir, images, max_new_tokens, exact=False),
              "atol": None}
    return write_manifest(out_dir, graphs, processor_files, model, checkpoint, parity, variant="int8-dynamic")


def export(options: ExportOptions) -> dict:
    """Export, validate and publish `options.out`; returns the fp32 manifest. Raises ExportError/ParityError."""
    out = Path(options.out)
    if out.exists() and not options.overwrite:
        raise ExportError(f"{out} exists; pass --overwrite to replace it")
    model, processor = load_checkpoint(options.checkpoint)
    images = sample_images(options.samples, options.images)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_directory(out) as staging:
        graphs = export_graphs(model, staging)
        graphs[SPLIT_DECODER] = derive_split_decoder(staging, model, graphs["decoder"])
        processor_files = _copy_processor_files(options.checkpoint, staging)
        parity = {"atol": options.atol, "outputs": validate_outputs(model, staging, options.atol)}
        # a first manifest, for the runner of validate_greedy_ids
        write_manifest(staging, graphs, processor_files, model, options.checkpoint, parity, variant="fp32")
        parity["greedy_ids"] = validate_greedy_ids(model, processor, staging, images, options.max_new_tokens)
        manifest = write_manifest(staging, graphs, processor_files, model, options.checkpoint, parity, variant="fp32")
        if options.int8:
            quantize_int8(model, processor, staging, staging / "int8", options.checkpoint, images,
                          options.max_new_tokens)
    return manifest


# ----------------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blip-export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="save_pretrained directory (weights + processor), e.g. blip-train's")
    parser.add_argument("--out", required=True, help="export directory to create (ONNX graphs + manifest)")
    parser.add_argument("--atol", type=float, default=ExportOptions.atol,
                        help="largest |onnx - torch| allowed on any output (default %(default)g)")
    parser.add_argument("--samples", type=int, default=ExportOptions.samples,
                        help="images for the greedy-ids parity check (default %(default)s)")
    parser.add_argument("--images", default="", help="folder of .jpg/.png for the parity check (default: synthetic)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="caption length of the parity check and of the TensorRT profile (default: what the "
                             "checkpoint records, see caption_settings)")
    parser.add_argument("--int8", action="store_true", help="also write OUT/int8: dynamic int8 graphs (approximate)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    trt = parser.add_argument_group("TensorRT (on the GPU that will run the engines)")
    trt.add_argument("--tensorrt", action="store_true", help="after exporting, build TensorRT engines in OUT/tensorrt")
    trt.add_argument("--tensorrt-only", action="store_true",
                     help="build engines from an existing export in OUT (no checkpoint needed)")
    trt.add_argument("--trt-precision", choices=("fp16", "fp32"), default="fp16", help="engine precision")
    trt.add_argument("--max-batch", type=int, default=MAX_BATCH,
                     help="largest batch (cameras x beams) of the engines' optimisation profile (default %(default)s)")
    trt.add_argument("--max-prompt-tokens", type=int, default=MAX_PROMPT_TOKENS,
                     help="longest start ([bos] + prompt tokens) the engines accept (default %(default)s)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    problems = []
    if not args.tensorrt_only and not args.checkpoint:
        problems.append("--checkpoint is required (unless --tensorrt-only)")
    if args.max_new_tokens is None:  # the engines' cache must hold the captions the model is set to write
        source = args.out if args.tensorrt_only else args.checkpoint
        try:
            args.max_new_tokens = (model_caption_settings(source) if source else STOCK).max_new_tokens
        except CaptionSettingsError as exc:
            problems.append(str(exc))
            args.max_new_tokens = STOCK.max_new_tokens
    for name in ("samples", "max_new_tokens", "max_batch", "max_prompt_tokens"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1")
    if args.atol <= 0:
        problems.append("--atol must be > 0")
    if problems:
        build_parser().error("; ".join(problems))
    started = time.monotonic()
    try:
        if args.tensorrt or args.tensorrt_only:
            from blip_caption_ros.backends.tensorrt_backend import EngineBuildError, require_tensorrt

            try:
                require_tensorrt()  # before minutes of ONNX export, not after
            except EngineBuildError as exc:
                print(f"blip-export: --tensorrt: {exc}", file=sys.stderr)
                return 2
        if not args.tensorrt_only:
            manifest = export(ExportOptions(
                checkpoint=args.checkpoint, out=args.out, atol=args.atol, samples=args.samples, images=args.images,
                max_new_tokens=args.max_new_tokens, int8=args.int8, overwrite=args.overwrite))
            worst = max(v["max_abs_diff"] for g in manifest["parity"]["outputs"].values() for v in g.values())
            print(f"blip-export: {args.out}: {', '.join(GRAPH_FILES.values())}, max |onnx - torch| {worst:.2g} "
                  f"(atol {args.atol:g}), greedy ids identical to generate on {args.samples} images"
                  + (", int8 in int8/" if args.int8 else "") + f", {time.monotonic() - started:.0f} s")
        if args.tensorrt or args.tensorrt_only:
            from blip_caption_ros.backends.tensorrt_backend import build_engines

            load_export_manifest(args.out)
            engines = build_engines(args.out, precision=args.trt_precision, max_batch=args.max_batch,
                                    max_prompt_tokens=args.max_prompt_tokens, max_new_tokens=args.max_new_tokens)
            print(f"blip-export: {Path(args.out) / ENGINE_DIR}: {args.trt_precision} engines for "
                  f"{engines['built_with']['gpu_name']} (TensorRT {engines['built_with']['tensorrt_version']})")
    except (ExportError, ValueError, OSError) as exc:
        print(f"blip-export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
