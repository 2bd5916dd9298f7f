"""Caption latency of every backend on a full-size BLIP-base (random weights: timings valid, captions not).

    python -m bench.caption_latency                      # CPU backends (+ GPU ones where CUDA/TensorRT exist)
    python -m bench.caption_latency --runs 10 --cameras 6 --json runs/bench/latency.json
    python -m bench.caption_latency --backends ov-fp32,ort-fp32,ov-int8 --rounds 3 --threads 2

Builds BLIP-base from config (ViT-B/16 at 384 px + the 12-layer BERT decoder with BERT's 30,524-token vocabulary,
12 text heads and a non-degenerate vision init; see blip_train.modeling), exports it once with blip-export (fp32 +
int8) and then times each backend in a process of its own (so peak memory is that backend's, and ONNX Runtime's
threads never compete with torch's) at batch 1 and batch = cameras, always forcing 20 new tokens. Prints p50/p95,
vision time, ms per token and peak memory, speed-up against torch eager fp32 (the baseline) measured in this run, how
often each approximate backend picks the same tokens as the baseline on the same images (greedy, and teacher-forced:
given the baseline's prefix), and each row's distance to this machine's floor (`measure_floor`).

With --rounds N the whole plan runs N times, the backends interleaved within each round, so a shared machine's load
hits every backend alike; the table gives the median over rounds and the spread (min-max) of the per-round values,
and speed-ups are per-round ratios against that round's baseline.
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

BERT_VOCAB = 30524  # Salesforce/blip-image-captioning-base: 30522 BERT tokens + [DEC] + one spare
#: ort-fp32-joined: ONNX Runtime on decoder.onnx, whose graph slices (copies) the image keys/values every token;
#: ort-fp32 runs decoder.split.onnx, which reads them in place (what the node uses).
#: ov-*: OpenVINO on the same export (fp32 at f32 inference precision; bf16 where the CPU has it; the int8 graphs).
CPU_BACKENDS = ("torch-fp32", "torch-bf16", "torch-static-fp32", "ort-fp32-joined", "ort-fp32", "ort-int8",
                "ov-fp32", "ov-bf16", "ov-int8")
GPU_BACKENDS = ("torch-eager-cuda-fp32", "torch-eager-cuda-fp16", "torch-cuda-fp32", "torch-cuda-fp16",
                "tensorrt-fp16")
EXACT = {"torch-fp32", "torch-static-fp32", "ort-fp32-joined", "ort-fp32", "ov-fp32", "torch-eager-cuda-fp32",
         "torch-cuda-fp32"}


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


def _runner(backend: str, checkpoint: Path, export_dir: Path, batch: int, max_new: int, threads: int = 0):
    """(generate(pixels) -> ids, encode(pixels), pixels, sync) for `backend`; `threads` 0 = the runtime's default."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    from blip_caption_ros.backends.decoding import start_ids
    from blip_caption_ros.backends.model_loading import load_blip, load_processor
    from blip_train.export import sample_images

    processor = load_processor(checkpoint)
    pixels = processor(images=sample_images(batch), return_tensors="pt").pixel_values
    bos = None
    sync = (lambda: torch.cuda.synchronize()) if "cuda" in backend or "tensorrt" in backend else (lambda: None)
    if backend.startswith(("ort-", "ov-")):
        from blip_caption_ros.backends import CaptionerConfig

        if backend.startswith("ov-"):
            from blip_caption_ros.backends.openvino_backend import OpenVinoCaptioner

            precision = backend.split("-")[1]
            runner = OpenVinoCaptioner(CaptionerConfig(model=str(export_dir), backend="openvino",
                                                       precision=precision), threads=threads)
        else:
            from blip_caption_ros.backends.onnx_backend import OnnxCaptioner

            runner = OnnxCaptioner(CaptionerConfig(model=str(export_dir / ("int8" if backend == "ort-int8" else "")),
                                                   backend="onnxruntime"),
                                   threads=threads, split_cross=backend != "ort-fp32-joined")
        start = start_ids(processor.tokenizer, "", runner.bos, batch)
        array = pixels.numpy()
        def forced(reference):  # next-token choices given the baseline's own prefix, step by step
            import numpy as np

            state = runner.decoder_state(runner.encode(array))
            picks = []
            for position in range(1, reference.shape[1]):
                logits = state.step(reference[:, position - 1: position])
                logits[:, runner.eos] = float("-inf")
                picks.append(np.argmax(logits, -1))
            return np.stack(picks, 1)

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
           baseline: str, threads: int = 0) -> dict:
    import torch

    generate, encode, sync, forced = _runner(backend, checkpoint, export_dir, batch, max_new, threads)

    def timed(fn, count):
        times = []
        for _ in range(count):
            sync()
            started = time.perf_counter()
            result = fn()
            sync()
            times.append((time.perf_counter() - started) * 1000)
        return times, result

    ids = generate()  # warm-up (and CUDA graph capture); torch ids, or numpy from the export runtimes
    ids = ids.cpu() if hasattr(ids, "cpu") else ids
    totals, _ = timed(generate, runs)
    timed(encode, 1)
    vision, _ = timed(encode, max(1, (runs + 1) // 2))
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


def measure_floor(checkpoint: Path, threads: int, peak_gflops: float = 0.0, memory_gbps: float = 0.0) -> dict:
    """This machine's floor for one caption: the vision encoder's FLOPs at the fp32 GEMM peak, and each decoder step
    reading all decoder weights once at the memory bandwidth (or its FLOPs at the peak, whichever is slower).

    FLOPs are counted by torch's FlopCounterMode on the exported vision graph's module (VisionCrossKV: the ViT plus
    every layer's cross-attention keys/values). Peak and bandwidth are measured here unless given: the best of a few
    2048^3 fp32 matmuls at `threads` threads, and the best of a few 256 MB numpy copies (read + write). On a shared
    machine both come out low, so the floor is conservative-high; pass the datasheet figures to compare with those.
    """
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from blip_caption_ros.backends.kv_decoder import VisionCrossKV
    from blip_caption_ros.backends.model_loading import load_blip

    if threads:
        torch.set_num_threads(threads)
    model = load_blip(checkpoint)[0].eval()
    size = model.config.vision_config.image_size
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        VisionCrossKV(model)(torch.zeros(1, 3, size, size))
    vision_flops = counter.get_total_flops()
    decoder_params = sum(p.numel() for p in model.text_decoder.parameters())
    if not peak_gflops:
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - started)
        peak_gflops = 2 * 2048**3 / best / 1e9
    if not memory_gbps:
        source, target = np.ones(1 << 26, np.float32), np.empty(1 << 26, np.float32)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            np.copyto(target, source)
            best = min(best, time.perf_counter() - started)
        memory_gbps = 2 * source.nbytes / best / 1e9
    return {"vision_gflop": vision_flops / 1e9, "decoder_mb": decoder_params * 4 / 2**20,
            "decoder_params": decoder_params, "peak_gflops": peak_gflops, "memory_gbps": memory_gbps}


def floor_ms(floor: dict, batch: int, max_new: int) -> float:
    """The fp32 floor of one call at `batch` (see measure_floor)."""
    vision = batch * floor["vision_gflop"] / floor["peak_gflops"] * 1000
    step = max(floor["decoder_params"] * 4 / (floor["memory_gbps"] * 1e9),
               batch * 2 * floor["decoder_params"] / (floor["peak_gflops"] * 1e9)) * 1000
    return vision + max_new * step


def agreement(reference: list, candidate: list) -> float:
    pairs = [(a, b) for ref_row, cand_row in zip(reference, candidate, strict=True)
             for a, b in zip(ref_row, cand_row, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(REPO / "runs" / "bench"), help="model and export cache directory")
    parser.add_argument("--runs", type=int, default=10, help="timed captions per backend at batch 1 (per round)")
    parser.add_argument("--batch-runs", type=int, default=3, help="timed calls per backend at batch = cameras")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole plan, backends interleaved; report median and spread over rounds")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads of every backend (torch, onnxruntime, OpenVINO); 0 = their defaults")
    parser.add_argument("--cameras", type=int, default=6, help="the multi-camera batch size")
    parser.add_argument("--single-only", action="store_true", help="batch 1 only (skip the multi-camera batch)")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--backends", default="",
                        help="comma-separated subset of " + ", ".join(CPU_BACKENDS + GPU_BACKENDS))
    parser.add_argument("--baseline", default="torch-fp32",
                        help="backend that speed-ups and token agreement are measured against (run first)")
    parser.add_argument("--peak-gflops", type=float, default=0.0,
                        help="fp32 compute peak for the floor columns (default: measured, see measure_floor)")
    parser.add_argument("--memory-gbps", type=float, default=0.0,
                        help="memory bandwidth for the floor columns (default: measured)")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", nargs=3, metavar=("BACKEND", "BATCH", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        backend, batch, runs = args.worker
        print(json.dumps(worker(backend, work / "blip-base", work / "onnx", int(batch), int(runs),
                                args.max_new_tokens, args.baseline, args.threads)))
        return 0

    checkpoint = build_model(work)
    export_model(checkpoint, work)
    floor = measure_floor(checkpoint, args.threads, args.peak_gflops, args.memory_gbps)
    print(f"floor: vision {floor['vision_gflop']:.0f} GFLOP at {floor['peak_gflops']:.0f} GFLOP/s, decoder "
          f"{floor['decoder_mb']:.0f} MB per token at {floor['memory_gbps']:.1f} GB/s", file=sys.stderr)
    backends = args.backends.split(",") if args.backends else available_backends()
    backends = [args.baseline] + [b for b in backends if b != args.baseline]
    results, failures = [], {}
    plan = [(1, args.runs)] + ([] if args.single_only else [(args.cameras, args.batch_runs)])
    for round_index in range(args.rounds):
        for batch, runs in plan:
            for backend in backends:
                if (backend, batch) in failures:
                    continue
                started = time.monotonic()
                proc = subprocess.run([sys.executable, "-m", __spec__.name, "--work", str(work), "--max-new-tokens",
                                       str(args.max_new_tokens), "--baseline", args.baseline, "--threads",
                                       str(args.threads), "--worker", backend, str(batch), str(runs)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    reason = _failure_reason(proc.stderr)
                    failures[backend, batch] = reason
                    print(f"{backend} batch {batch}: failed: {reason}", file=sys.stderr)
                    continue
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]) | {"round": round_index})
                if args.json:  # as it goes, so an interrupted run keeps what it measured
                    _write_json(args.json, floor, results, failures)
                print(f"  round {round_index + 1}/{args.rounds} {backend:18s} batch {batch}: "
                      f"{results[-1]['p50_ms']:8.0f} ms p50 ({time.monotonic() - started:.0f} s)", file=sys.stderr)

    rows = summarise(results, args.baseline, floor, args.max_new_tokens)
    print(f"\nBLIP-base (224M, random weights), {args.max_new_tokens} new tokens forced, {os.cpu_count()} CPU threads "
          f"available, threads per backend: {args.threads or 'default'}, {args.rounds} round(s) x {args.runs} runs "
          f"(batch 1) / {args.batch_runs} (batch {args.cameras}), baseline {args.baseline}; median over rounds "
          "[min-max]. floor = this machine's fp32 floor (vision GFLOP at the measured GEMM peak + decoder weights "
          f"per token at the measured bandwidth: {floor['peak_gflops']:.0f} GFLOP/s, {floor['memory_gbps']:.1f} GB/s)")
    header = ("backend", "batch", "p50 ms", "p95 ms", "vision ms", "ms/token", "peak MB", "speed-up", "agreement",
              "teacher-forced", "floor ms", "x floor")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row["cells"]) + " |")
    for (backend, batch), reason in sorted(failures.items()):
        print(f"| {backend} | {batch} | not run: {reason} |")
    if args.json:
        _write_json(args.json, floor, results, failures, rows)
    return 0


def _write_json(path: str, floor: dict, results: list, failures: dict, rows: list | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"argv": sys.argv[1:], "floor": floor, "results": results, "rows": rows,
                                      "failures": {f"{b} batch {n}": r for (b, n), r in failures.items()}}, indent=1))


def _failure_reason(stderr: str) -> str:
    """The last line of a worker's traceback (a ModelLoadError says why, e.g. no bf16 on this CPU)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no output"


def _spread(values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{median:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def summarise(results: list[dict], baseline: str, floor: dict, max_new: int) -> list[dict]:
    """One row per (batch, backend): medians over rounds, speed-ups as per-round ratios to that round's baseline."""
    rows = []
    for batch in sorted({r["batch"] for r in results}):
        at_batch = [r for r in results if r["batch"] == batch]
        base = {r["round"]: r for r in at_batch if r["backend"] == baseline}
        floor_batch = floor_ms(floor, batch, max_new)
        for backend in dict.fromkeys(r["backend"] for r in at_batch):
            runs = [r for r in at_batch if r["backend"] == backend]
            p50 = [r["p50_ms"] for r in runs]
            speedups = [base[r["round"]]["p50_ms"] / r["p50_ms"] for r in runs if r["round"] in base]
            reference = next(iter(base.values()), None)
            token_agreement = [agreement(reference["ids"], r["ids"]) for r in runs] if reference else []
            forced = [r["forced_agreement"] for r in runs if "forced_agreement" in r]
            exact = "baseline" if backend == baseline else ("exact" if backend in EXACT else "approx.")
            memory = statistics.median(r["peak_rss_mb"] for r in runs)
            gpu = [r["peak_gpu_mb"] for r in runs if "peak_gpu_mb" in r]
            row = {"backend": backend, "batch": batch, "p50_ms": statistics.median(p50),
                   "speedup": statistics.median(speedups) if speedups else None,
                   "token_agreement": min(token_agreement) if token_agreement else None,
                   "forced_agreement": min(forced) if forced else None, "floor_ms": floor_batch,
                   "identical_ids": bool(token_agreement) and min(token_agreement) == 1.0}
            row["cells"] = [
                backend, str(batch), _spread(p50, ".0f"), _spread([r["p95_ms"] for r in runs], ".0f"),
                _spread([r["vision_ms"] for r in runs], ".0f"), _spread([r["ms_per_token"] for r in runs], ".1f"),
                f"{memory:.0f}" + (f" (+{max(gpu):.0f} GPU)" if gpu else ""),
                (_spread(speedups, ".2f") + "x") if speedups else "-",
                f"{row['token_agreement']:.1%} ({exact})" if token_agreement else "-",
                f"{row['forced_agreement']:.1%}" if forced else "-",
                f"{floor_batch:.0f}", f"{statistics.median(p50) / floor_batch:.2f}x",
            ]
            rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
