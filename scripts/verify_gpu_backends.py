"""Verify the GPU backends (torch-cuda, tensorrt) on a machine that has them: a Jetson or a workstation GPU.

    python scripts/verify_gpu_backends.py                    # ~10-15 min on a desktop GPU, more on a Jetson
    python scripts/verify_gpu_backends.py --quick            # correctness only, no full-size latency run

Runs, in order, and stops at the first failure with its output:
  1. the GPU tests (test/test_gpu_backends.py): torch-cuda's static cache + CUDA graphs and TensorRT fp32 engines
     give the torch backend's captions; engines built for another GPU are refused and rebuilt with
     force_engine_update. Here they must run, not be skipped.
  2. the ONNX export and onnxruntime tests (CPU) as a sanity check of this install.
  3. bench/caption_latency.py on full-size BLIP-base for torch eager fp32 on CUDA (the GPU baseline), torch-cuda
     fp32/fp16 and TensorRT fp16 engines at batch 1 and 6, and checks the latency goals at batch 1: vision encoder
     <= 1.5 ms, decoding <= 0.25 ms/token, a 20-token caption <= 6.5 ms (for the fastest GPU backend).
Writes everything to --out (default runs/gpu_verify): pytest logs, latency.json, summary.json.
Needs: CUDA torch, transformers, onnx, onnxscript, onnxruntime, and the tensorrt Python package (JetPack ships it;
x86: pip install tensorrt). Exit code 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS = {"vision_ms": 1.5, "ms_per_token": 0.25, "p50_ms": 6.5}
GPU_BENCH = "torch-eager-cuda-fp32,torch-cuda-fp32,torch-cuda-fp16,tensorrt-fp16"


def run(step: str, cmd: list[str], out: Path) -> tuple[int, str]:
    print(f"== {step}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (out / f"{step}.log").write_text(log)
    print(log[-3000:], flush=True)
    return proc.returncode, log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "runs" / "gpu_verify"))
    parser.add_argument("--quick", action="store_true", help="skip the full-size latency benchmark")
    parser.add_argument("--runs", type=int, default=50, help="timed captions per backend at batch 1")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}

    try:
        import tensorrt
        import torch
    except ImportError as exc:
        print(f"verify_gpu_backends: missing {exc.name}: this script needs CUDA torch and tensorrt", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("verify_gpu_backends: no CUDA GPU visible", file=sys.stderr)
        return 2
    summary["machine"] = {"gpu": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(),
                          "torch": torch.__version__, "tensorrt": tensorrt.__version__}
    print(json.dumps(summary["machine"]), flush=True)

    code, log = run("gpu_tests", [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                  "test/test_gpu_backends.py"], out)
    summary["gpu_tests"] = {"exit": code, "skipped": "SKIPPED" in log}
    if code != 0 or "SKIPPED" in log:
        print("FAIL: GPU tests failed or were skipped on a GPU machine", file=sys.stderr)
        return _finish(out, summary, 1)

    code, _ = run("cpu_tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not ros",
                                "test/test_export.py", "test/test_onnx_backend.py", "test/test_engine_manifest.py"],
                  out)
    summary["cpu_tests"] = {"exit": code}
    if code != 0:
        return _finish(out, summary, 1)

    if not args.quick:
        latency = out / "latency.json"
        code, _ = run("latency", [sys.executable, "bench/caption_latency.py", "--backends", GPU_BENCH,
                                  "--baseline", "torch-eager-cuda-fp32", "--runs", str(args.runs), "--batch-runs",
                                  "20", "--json", str(latency)], out)
        if code != 0 or not latency.is_file():
            return _finish(out, summary, 1)
        results = json.loads(latency.read_text())
        batch1 = [r for r in results if r["batch"] == 1 and r["backend"] != "torch-eager-cuda-fp32"]
        best = min(batch1, key=lambda r: r["p50_ms"])
        summary["latency"] = {"fastest_batch1": {k: best[k] for k in ("backend", "p50_ms", "vision_ms",
                                                                       "ms_per_token")},
                              "goals": GOALS, "results": results}
        missed = [f"{key} {best[key]:.2f} > {goal}" for key, goal in GOALS.items() if best[key] > goal]
        summary["latency"]["goals_met"] = not missed
        print(("latency goals met by " if not missed else "latency goals MISSED (" + "; ".join(missed) + ") by ")
              + best["backend"], flush=True)
    return _finish(out, summary, 0)


def _finish(out: Path, summary: dict, code: int) -> int:
    summary["exit"] = code
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"summary: {out / 'summary.json'} ({'PASS' if code == 0 else 'FAIL'})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
