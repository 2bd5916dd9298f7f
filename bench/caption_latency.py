"""Caption latency of every backend on a full-size BLIP-base (random weights: timings valid, captions not).

    python bench/caption_latency.py                      # CPU backends (+ GPU ones where CUDA/TensorRT exist)
    python bench/caption_latency.py --runs 10 --cameras 6 --json runs/bench/latency.json

Builds BLIP-base from config (ViT-B/16 at 384 px + the 12-layer BERT decoder with BERT's 30,524-token vocabulary,
12 text heads and a non-degenerate vision init; see blip_train.modeling), exports it once with blip-export (fp32 +
int8) and then times each backend in a process of its own (so peak memory is that backend's, and ONNX Runtime's
threads never compete with torch's) at batch 1 and batch = cameras, always forcing 20 new tokens. Prints p50/p95,
vision time, ms per token and peak memory, speed-up against torch eager fp32 (the baseline) measured in this run, and
how often each approximate backend picks the same tokens as the baseline on the same images.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BERT_VOCAB = 30524  # Salesforce/blip-image-captioning-base: 30522 BERT tokens + [DEC] + one spare
#: ort-fp32-joined: ONNX Runtime on decoder.onnx, whose graph slices (copies) the image keys/values every token;
#: ort-fp32 runs decoder.split.onnx, which reads them in place (what the node uses).
CPU_BACKENDS = ("torch-fp32", "torch-bf16", "torch-static-fp32", "ort-fp32-joined", "ort-fp32", "ort-int8")
GPU_BACKENDS = ("torch-eager-cuda-fp32", "torch-eager-cuda-fp16", "torch-cuda-fp32", "torch-cuda-fp16",
                "tensorrt-fp16")
EXACT = {"torch-fp32", "torch-static-fp32", "ort-fp32-joined", "ort-fp32", "torch-eager-cuda-fp32", "torch-cuda-fp32"}


def build_model(work: Path) -> Path:
    """BLIP-base with random weights and a BERT-sized vocabulary, saved once under work/blip-base."""
    from blip_train.modeling import BLIP_BASE, PUNCTUATION, SPECIAL_TOKENS, build_blip

    checkpoint = work / "blip-base"
    if not (checkpoint / "model.safetensors").is_file():
        filler = BERT_VOCAB - 1 - len(SPECIAL_TOKENS) - len(set(PUNCTUATION))  # -1: [DEC] is added
        words = ["a", "picture", "of", "car", "road", "street", "city", "night", "rain"]
        words += [f"tok{i:05d}" for i in range(filler - len(words))]
        build_blip(words, checkpoint, arch=BLIP_BASE, seed=0)
    return checkpoint


def export_model(checkpoint: Path, work: Path) -> Path:
    from blip_train.export import ExportOptions, export

    out = work / "onnx"
    manifest = out / "int8" / "onnx_manifest.json"
    if not manifest.is_file() or "decoder_split" not in json.loads(manifest.read_text())["graphs"]:
        started = time.monotonic()
        export(ExportOptions(checkpoint=str(checkpoint), out=str(out), samples=2, int8=True, overwrite=True))
        print(f"exported in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------------------------------------------
# one backend, in its own process


def _runner(backend: str, checkpoint: Path, export_dir: Path, batch: int, max_new: int):
    """(generate(pixels) -> ids, encode(pixels), pixels, sync) for `backend`."""
    import torch

    from blip_caption_ros.backends.decoding import start_ids
    from blip_caption_ros.backends.model_loading import load_blip, load_processor
    from blip_train.export import sample_images

    processor = load_processor(checkpoint)
    pixels = processor(images=sample_images(batch), return_tensors="pt").pixel_values
    bos = None
    sync = (lambda: torch.cuda.synchronize()) if "cuda" in backend or "tensorrt" in backend else (lambda: None)
    if backend.startswith("ort-"):
        from blip_caption_ros.backends.onnx_backend import OnnxCaptioner

        runner = OnnxCaptioner.from_export_dir(export_dir / ("int8" if backend == "ort-int8" else ""),
                                               split_cross=backend != "ort-fp32-joined")
        start = start_ids(processor.tokenizer, "", runner.bos, batch)
        array = pixels.numpy()
        def forced(reference):  # next-token choices given the baseline's own prefix, step by step
            state = runner.decoder_state(runner.encode(array))
            picks, step_input = [], torch.tensor(reference[:, :1])
            for position in range(1, reference.shape[1]):
                logits = state.step(step_input)
                logits[:, runner.eos] = float("-inf")
                picks.append(torch.argmax(logits, -1))
                step_input = torch.tensor(reference[:, position: position + 1])
            return torch.stack(picks, 1).numpy()

        return (lambda: runner.generate_ids(array, start, max_new, min_new_tokens=max_new),
                lambda: runner.encode(array), sync, forced)
    if backend.startswith("tensorrt"):
        from blip_caption_ros.backends import CaptionerConfig
        from blip_caption_ros.backends.tensorrt_backend import TensorRTCaptioner, build_engines

        if not (export_dir / "tensorrt" / "engine_manifest.json").is_file():
            build_engines(export_dir, precision="fp16", max_batch=max(batch, 6), max_new_tokens=max_new)
        runner = TensorRTCaptioner(CaptionerConfig(model=str(export_dir), backend="tensorrt", device="cuda",
                                                   precision="fp16", max_new_tokens=max_new))
        start = start_ids(processor.tokenizer, "", runner.bos, batch)
        gpu = pixels.cuda()

        def encode():
            runner.engines["vision"].run({"pixel_values": gpu}, {"cross_kv": runner._buffers.cross(batch)})

        return lambda: runner.generate_ids(gpu, start, max_new, min_new_tokens=max_new), encode, sync, None
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[backend.rsplit("-", 1)[1]]
    device = "cuda" if "cuda" in backend else "cpu"
    model = load_blip(checkpoint, dtype=dtype)[0].to(device).eval()
    bos = model.config.text_config.bos_token_id
    pixels = pixels.to(device, dtype)
    if backend.startswith("torch-static") or backend.startswith("torch-cuda"):
        from blip_caption_ros.backends.torch_cuda_backend import StaticCacheGenerator

        generator = StaticCacheGenerator(model, max_rows=batch, max_new_tokens=max_new)
        start = start_ids(processor.tokenizer, "", bos, batch)
        return (lambda: generator.generate_ids(pixels, start, max_new, min_new_tokens=max_new),
                lambda: generator.vision(pixels), sync, None)

    def generate():
        with torch.inference_mode():
            return model.generate(pixel_values=pixels, max_new_tokens=max_new, min_new_tokens=max_new)

    def encode():
        with torch.inference_mode():
            return model.vision_model(pixel_values=pixels)[0]

    def forced(reference):  # next-token choices given the baseline's own prefix, one forward pass
        with torch.inference_mode():
            ids = torch.tensor(reference, device=device)
            logits = model.text_decoder(input_ids=ids[:, :-1], encoder_hidden_states=encode()).logits.float()
            logits[:, :, model.config.text_config.sep_token_id] = float("-inf")
            return torch.argmax(logits, -1).cpu().numpy()

    return generate, encode, sync, forced


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM: unlike ru_maxrss it does not carry over the parent's across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(backend: str, checkpoint: Path, export_dir: Path, batch: int, runs: int, max_new: int,
           baseline: str) -> dict:
    import torch

    generate, encode, sync, forced = _runner(backend, checkpoint, export_dir, batch, max_new)

    def timed(fn, count):
        times = []
        for _ in range(count):
            sync()
            started = time.perf_counter()
            result = fn()
            sync()
            times.append((time.perf_counter() - started) * 1000)
        return times, result

    ids = generate().cpu()  # warm-up (and CUDA graph capture)
    totals, _ = timed(generate, runs)
    timed(encode, 1)
    vision, _ = timed(encode, max(3, runs // 2))
    p50, vision_p50 = statistics.median(totals), statistics.median(vision)
    result = {
        "backend": backend, "batch": batch, "runs": runs, "p50_ms": p50,
        "p95_ms": statistics.quantiles(totals, n=20)[-1] if len(totals) > 1 else totals[0],
        "vision_ms": vision_p50, "ms_per_token": (p50 - vision_p50) / max_new,
        "peak_rss_mb": _peak_rss_mb(),
        "ids": ids[:, -max_new:].tolist(),
    }
    reference = export_dir.parent / f"reference_ids_{baseline}_batch{batch}.json"
    if forced is not None and backend != baseline and reference.is_file():
        import numpy as np

        full = np.array(json.loads(reference.read_text()))
        result["forced_agreement"] = float(np.mean(forced(full) == full[:, 1:]))
    if backend == baseline:
        reference.write_text(json.dumps(ids.tolist()))
    if torch.cuda.is_available() and ("cuda" in backend or "tensorrt" in backend):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name()
    return result


# ----------------------------------------------------------------------------------------------------------------


def available_backends() -> list[str]:
    backends = list(CPU_BACKENDS)
    try:
        import torch

        if torch.cuda.is_available():
            backends += ["torch-eager-cuda-fp32", "torch-cuda-fp32", "torch-cuda-fp16"]
            import importlib.util

            if importlib.util.find_spec("tensorrt") is not None:
                backends.append("tensorrt-fp16")
    except ImportError:
        pass
    return backends


def agreement(reference: list, candidate: list) -> float:
    pairs = [(a, b) for ref_row, cand_row in zip(reference, candidate, strict=True)
             for a, b in zip(ref_row, cand_row, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(REPO / "runs" / "bench"), help="model and export cache directory")
    parser.add_argument("--runs", type=int, default=10, help="timed captions per backend at batch 1")
    parser.add_argument("--batch-runs", type=int, default=3, help="timed calls per backend at batch = cameras")
    parser.add_argument("--cameras", type=int, default=6, help="the multi-camera batch size")
    parser.add_argument("--single-only", action="store_true", help="batch 1 only (skip the multi-camera batch)")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--backends", default="",
                        help="comma-separated subset of " + ", ".join(CPU_BACKENDS + GPU_BACKENDS))
    parser.add_argument("--baseline", default="torch-fp32",
                        help="backend that speed-ups and token agreement are measured against (run first)")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", nargs=3, metavar=("BACKEND", "BATCH", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        backend, batch, runs = args.worker
        print(json.dumps(worker(backend, work / "blip-base", work / "onnx", int(batch), int(runs),
                                args.max_new_tokens, args.baseline)))
        return 0

    checkpoint = build_model(work)
    export_model(checkpoint, work)
    backends = args.backends.split(",") if args.backends else available_backends()
    backends = [args.baseline] + [b for b in backends if b != args.baseline]
    results = []
    plan = [(1, args.runs)] + ([] if args.single_only else [(args.cameras, args.batch_runs)])
    for batch, runs in plan:
        for backend in backends:
            started = time.monotonic()
            proc = subprocess.run([sys.executable, __file__, "--work", str(work), "--max-new-tokens",
                                   str(args.max_new_tokens), "--baseline", args.baseline, "--worker", backend,
                                   str(batch), str(runs)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{backend} batch {batch}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  {backend:18s} batch {batch}: {results[-1]['p50_ms']:8.0f} ms p50 "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr)

    print(f"\nBLIP-base (224M, random weights), {args.max_new_tokens} new tokens forced, "
          f"{os.cpu_count()} CPU threads available, baseline {args.baseline}")
    header = ("backend", "batch", "p50 ms", "p95 ms", "vision ms", "ms/token", "peak MB", "speed-up", "agreement",
              "teacher-forced")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for batch in (1, args.cameras):
        rows = [r for r in results if r["batch"] == batch]
        baseline = next((r for r in rows if r["backend"] == args.baseline), None)
        for r in rows:
            r["speedup"] = baseline["p50_ms"] / r["p50_ms"] if baseline else None
            r["token_agreement"] = agreement(baseline["ids"], r["ids"]) if baseline else None
            memory = f"{r['peak_rss_mb']:.0f}" + (f" (+{r['peak_gpu_mb']:.0f} GPU)" if "peak_gpu_mb" in r else "")
            exact = "exact" if r["backend"] in EXACT else "approx."
            if r["backend"] == args.baseline:
                exact = "baseline"
            print(f"| {r['backend']} | {batch} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['vision_ms']:.0f} | "
                  f"{r['ms_per_token']:.1f} | {memory} | "
                  + (f"{r['speedup']:.2f}x" if r["speedup"] else "-") + " | "
                  + (f"{r['token_agreement']:.1%} ({exact})" if r["token_agreement"] is not None else "-") + " | "
                  + (f"{r['forced_agreement']:.1%}" if "forced_agreement" in r else "-") + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
