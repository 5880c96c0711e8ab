"""Mixed precision: float16 ONNX models for GPUs, and a side-by-side CPU measurement of the precisions.

:func:`to_fp16` converts an ONNX recogniser's weights and compute to float16 with float32 inputs and
outputs (``keep_io_types``), for ONNX Runtime's CUDA/TensorRT providers and TensorRT. ONNX Runtime's
CPU provider has no float16 kernels for these layers: with its full graph optimisation it crashed
(segmentation fault, ONNX Runtime 1.31) loading such a model on this project's machine, so
``edgeocr optimize --fp16`` refuses the CPU-only ONNX Runtime engine, and :func:`compare` measures the
float16 ONNX model only with extended (not full) optimisation, where it loads.

``edgeocr study precision --model default --data DIR --threads 2 --out FILE.json`` reads
the same lines with every precision this CPU offers and prints one table: ONNX Runtime float32 and
float16, OpenVINO float32 and bfloat16 (the ``INFERENCE_PRECISION_HINT``; AVX512-BF16/AMX kernels),
and torch eager float32 and bfloat16 autocast. Each row: character accuracy, latency p50 at batch 1,
throughput at batch 64, all through the runtime's preprocessing and decoding
(:mod:`edgeocr.optimize.engines`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edgeocr.core.errors import EdgeOCRError, ModelError
from edgeocr.core.sidecar import load_sidecar, sidecar_path
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer


def to_fp16(model: Path, out: Path) -> Path:
    """``model`` with float16 weights and compute, float32 inputs and outputs, written to ``out``."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True)
    except Exception as exc:  # the converter raises whatever onnx raises on an odd graph
        raise ModelError(f"cannot convert {model} to float16: {exc}") from exc
    onnx.save(converted, str(out))
    return out


def _extended_optimisation_recognizer(model_path: Path, engine: EngineConfig) -> OnnxRecognizer:
    """An ONNX recogniser whose session uses extended (not full) graph optimisation: the float16 model on CPU."""
    import onnxruntime as ort

    from edgeocr.runtime.engines import EngineRecognizer
    from edgeocr.runtime.recognizer import session_options

    class Extended(EngineRecognizer):
        def _open_session(self) -> ort.InferenceSession:
            (data,) = self._verified_bytes(self.model_path)
            options = session_options(self.engine)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            return ort.InferenceSession(data, options, providers=list(self.engine.providers))

    return Extended(model_path, engine)


def _variants(model: Path, work: Path) -> dict[str, Callable[[EngineConfig], OnnxRecognizer]]:
    """Every precision this machine can run, as recogniser factories."""
    from edgeocr.core.sidecar import OptimizationNote
    from edgeocr.optimize.derived import save_derived_onnx
    from edgeocr.optimize.engines import TorchRecognizer, convert_to_openvino, write_openvino_sidecar
    from edgeocr.runtime.engines import OpenVinoRecognizer

    sidecar = load_sidecar(sidecar_path(model))
    note = OptimizationNote(source=str(model), source_sha256=sidecar.onnx_sha256, steps=("fp16",))
    fp16 = save_derived_onnx(to_fp16(model, work / "raw16.onnx"), work / "fp16.onnx", sidecar, note).path
    xml = convert_to_openvino(model, work / "ov" / "model.xml")
    write_openvino_sidecar(xml, sidecar, note.model_copy(update={"steps": ("openvino",)}))
    return {
        "onnxruntime fp32": lambda e: OnnxRecognizer(model, e),
        "onnxruntime fp16 (CPU, extended optimisation)": lambda e: _extended_optimisation_recognizer(fp16, e),
        "openvino fp32": lambda e: OpenVinoRecognizer(xml, e, precision="f32"),
        "openvino bf16": lambda e: OpenVinoRecognizer(xml, e, precision="bf16"),
        "torch eager fp32": lambda e: TorchRecognizer(model, e, precision="fp32"),
        "torch eager bf16 autocast": lambda e: TorchRecognizer(model, e, precision="bf16"),
    }


def compare(model: Path, data: Path, threads: int, batch: int = 64, limit: int | None = None) -> dict:
    """Accuracy, latency and throughput of each precision on the (first ``limit``) lines of ``data``."""
    import tempfile
    import time

    from edgeocr.data.labels import read_labels
    from edgeocr.measure.evaluate import evaluate_samples, load_images
    from edgeocr.measure.resources import environment

    samples, _ = read_labels(data, strict=True)
    samples = samples[:limit] if limit else samples
    images = load_images(samples)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgeocr-precision-") as tmp:
        for name, factory in _variants(model, Path(tmp)).items():
            recognizer = factory(EngineConfig(intra_op_threads=threads, max_batch_size=batch))

            def read(image: np.ndarray, recognizer: OnnxRecognizer = recognizer) -> tuple[str, float]:
                line = recognizer.recognize([image])[0]
                return line.text, line.confidence

            scored = evaluate_samples(read, samples)
            chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
            recognizer.recognize(chunks[0])
            start = time.perf_counter()
            for chunk in chunks:
                recognizer.recognize(chunk)
            rate = len(images) / (time.perf_counter() - start)
            rows[name] = {
                "char_accuracy": scored["char_accuracy"],
                "exact_match": scored["exact_match"],
                "latency_ms_p50": scored["latency_ms_p50"],
                f"throughput_ips_batch{batch}": round(rate, 1),
            }
            print(
                f"{name:48s} char {100 * scored['char_accuracy']:6.2f} %  p50 {scored['latency_ms_p50']:6.2f} ms  "
                f"batch {batch}: {rate:7.1f} lines/s",
                flush=True,
            )
    return {
        "model": str(model),
        "data": str(data),
        "n": len(samples),
        "threads": threads,
        "batch": batch,
        "rows": rows,
        "environment": environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure every CPU precision of a recogniser side by side.")
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, required=True, help="labels.tsv folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lines", type=int, help="use only the first N lines of --data")
    parser.add_argument("--out", type=Path, help="write the figures here (JSON)")
    args = parser.parse_args(argv)
    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.runtime.models import resolve_model

    try:
        result = compare(resolve_model(args.model), args.data, args.threads, args.batch, args.lines)
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    return 0
