"""Measure the recogniser on an NVIDIA GPU: torch eager fp32 / fp16, torch.compile with CUDA graphs,
ONNX Runtime's CUDA provider and TensorRT when they are installed.

    edgeocr study gpu --model default --out build/bench/gpu.json [--data DIR]

Every variant reads the same lines through the runtime's preprocessing and CTC decoding
(:mod:`edgeocr.optimize.engines`): character accuracy (fp16 must read like fp32), latency p50/p95 per
line at batch 1, and throughput (lines/s) at batch 1, 32 and 64, after a warm-up pass over every line
(for ``torch.compile`` that pass compiles and captures one CUDA graph per input shape; it is not timed).
Without ``--data``, 1024 synthetic lines of the test seed are rendered. A variant whose library is
missing is recorded as not available with the reason, never as zero. Without a CUDA device the script
refuses ("no CUDA device") and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeocr.core.errors import EdgeOCRError
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

BATCHES = (1, 32, 64)
DEFAULT_LINES = 1024


def _cuda_device() -> str:
    try:
        import torch
    except ImportError as exc:
        raise EdgeOCRError(f"no CUDA device: torch is not installed ({exc})") from exc
    if not torch.cuda.is_available():
        raise EdgeOCRError(
            "no CUDA device: torch.cuda.is_available() is False (CPU-only torch, no NVIDIA driver or "
            "no GPU); run this on a machine with an NVIDIA GPU"
        )
    return torch.cuda.get_device_name(0)


def _variants(model: Path) -> dict[str, Callable[[EngineConfig], OnnxRecognizer]]:
    from edgeocr.optimize.engines import TorchRecognizer
    from edgeocr.runtime.engines import TensorRtRecognizer
    from edgeocr.runtime.recognizer import OnnxRecognizer

    cuda = EngineConfig(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    return {
        "torch eager fp32": lambda e: TorchRecognizer(model, e, device="cuda", precision="fp32"),
        "torch eager fp16": lambda e: TorchRecognizer(model, e, device="cuda", precision="fp16"),
        "torch.compile reduce-overhead (CUDA graphs) fp16": lambda e: TorchRecognizer(
            model, e, device="cuda", precision="fp16", compile_mode="reduce-overhead"
        ),
        "onnxruntime CUDA fp32": lambda e: OnnxRecognizer(
            model, EngineConfig(max_batch_size=e.max_batch_size, providers=cuda.providers)
        ),
        "tensorrt fp16": lambda e: TensorRtRecognizer(model, e, precision="fp16"),
    }


def _measure(recognizer: OnnxRecognizer, images: list[np.ndarray], labels: list[str]) -> dict:
    from edgeocr.measure.metrics import accuracy

    for size in BATCHES:  # warm-up: every shape once (compilation, CUDA graph capture, cuDNN autotuning)
        for start in range(0, len(images), size):
            recognizer.recognize(images[start : start + size])
    latencies, texts = [], []
    for image in images:
        start = time.perf_counter()
        texts.append(recognizer.recognize([image])[0].text)
        latencies.append(1e3 * (time.perf_counter() - start))
    throughput = {}
    for size in BATCHES:
        start = time.perf_counter()
        for first in range(0, len(images), size):
            recognizer.recognize(images[first : first + size])
        throughput[str(size)] = round(len(images) / (time.perf_counter() - start), 1)
    return {
        "char_accuracy": round(accuracy(labels, texts)["char_accuracy"], 6),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
        "throughput_ips": throughput,
    }


def run(model: Path, data: Path | None) -> dict:
    gpu = _cuda_device()
    import torch

    torch._dynamo.config.cache_size_limit = 256  # one graph per (batch, width): keep them all compiled
    from edgeocr.data.labels import read_labels
    from edgeocr.measure.evaluate import load_images
    from edgeocr.measure.resources import environment
    from edgeocr.optimize.calibration import EVAL_SEED, render_lines

    with tempfile.TemporaryDirectory(prefix="edgeocr-gpu-") as tmp:
        folder = data or render_lines(DEFAULT_LINES, EVAL_SEED, Path(tmp) / "lines")
        samples, _ = read_labels(folder, strict=True)
        images, labels = load_images(samples), [s.text for s in samples]
    rows = {}
    for name, factory in _variants(model).items():
        try:
            recognizer = factory(EngineConfig(max_batch_size=max(BATCHES)))
        except EdgeOCRError as exc:
            rows[name] = {"status": "not available", "reason": str(exc)}
            print(f"{name:52s} not available: {exc}", flush=True)
            continue
        rows[name] = {"status": "ok", **_measure(recognizer, images, labels)}
        r = rows[name]
        print(
            f"{name:52s} char {100 * r['char_accuracy']:6.2f} %  p50 {r['latency_ms_p50']:6.2f} ms  "
            + "  ".join(f"b{b}: {v:8.1f}/s" for b, v in r["throughput_ips"].items()),
            flush=True,
        )
    return {
        "model": str(model),
        "gpu": gpu,
        "lines": len(images),
        "data": str(data) if data else "synthetic",
        "batches": list(BATCHES),
        "variants": rows,
        "environment": environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the recogniser on a CUDA GPU.")
    parser.add_argument("--model", default="default", help="shipped name or .onnx with its sidecar and .pt")
    parser.add_argument("--data", type=Path, help="labels.tsv folder (default: 1024 synthetic lines)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.runtime.models import resolve_model

    try:
        result = run(resolve_model(args.model), args.data)
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0
