#!/usr/bin/env python3
"""Call 1: the CPU-against-GPU table of the shipped recognisers and the shipped detector.

    python3 scripts/gpu/call1_table.py --device cuda [--out DIR] [--budget-s 400]   # on the lent GPU machine
    .venv/bin/python scripts/gpu/call1_table.py --device cpu --threads 2             # the 2-core machine
    .venv/bin/python scripts/gpu/call1_table.py --device cpu --smoke --out /tmp/t    # the test suite's run

Every engine reads through the runtime's own preprocessing and decoding (:mod:`edgeocr.runtime`):

* recognisers (default, accurate, fast, fast-int8): ONNX Runtime on the CPU (the host's CPU, on the GPU
  machine too) and with the CUDA and TensorRT execution providers (strict: a missing provider is a
  row saying so, never a CPU figure); torch eager fp32 / fp16 / bf16 and ``torch.compile`` (CUDA graphs
  on the GPU) from the ``.pt`` beside the crnn models and from the accurate model's own ONNX
  (``edgeocr.models.pretrained.load_exported``); TensorRT itself (``TensorRtRecognizer``) when installed.
* the detector: ONNX Runtime CPU / CUDA, and torch replaying its ONNX graph (``gpulib.onnx_graph_module``).

Each row: latency p50 / p95 per crop (or image) at batch 1 after a warm-up; throughput at each
``--batches`` size over the synthetic lines as they come (the runtime groups lines of one padded width,
so a batch of 256 mixed lines is several network calls) and over lines of one width (one network call
per batch); accuracy on every line set (synthetic test lines, realdev crops) or detection
precision / recall / hmean (IoU 0.5) on every scene set; process CPU % and RSS (psutil), GPU
utilisation and device memory (NVML, else nvidia-smi) and torch's peak CUDA allocation. Each row
names the machine that gave it. ``table.json`` and ``table.md`` are rewritten after every row, so a call
cut off at its time limit still returns what was measured; a row whose turn comes after ``--budget-s``
says "not run".

``--device cuda`` without a CUDA device exits 2 with "no CUDA device" before measuring anything.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpulib  # noqa: E402

gpulib.bootstrap()

RECOGNISERS = ("default", "accurate", "fast", "fast-int8")
DETECTOR = "fast"  # ours (db_s): its folded graph is what onnx_graph_module replays in torch
FORMAT = "edgeocr-gpu-table-1"
SYNTHETIC_LINES = 512  # first lines of the synthetic test set (seed 20261121), when none are given
SYNTHETIC_SCENES = 48  # first scenes of the detector's test set (seed 20261122)
SCENE_SEED = 20261122
DETECTOR_SHAPE = (480, 640)  # the network-only detector throughput: one 640x480 frame per image
LINE_ASPECT = 5  # the one-width recogniser throughput: lines of 5 x input height
SMOKE_LINES = 2  # --smoke: lines per set (and 1 scene a set, batches 1 and 2)
SMOKE_SCENE_SCALE = 0.4  # --smoke: scenes shrunk (CPU torch pays about a second for each new input shape)
SMOKE_DETECTOR_SHAPE = (96, 128)
STATUSES = ("ok", "not available", "n/a", "failed", "not run", "skipped")


# --- the plan --------------------------------------------------------------------------------------


@dataclass
class Variant:
    component: str  # 'recogniser' or 'detector'
    model: str
    name: str
    engine: str  # 'onnxruntime', 'torch', 'tensorrt'
    machine: str  # 'cpu' or 'gpu': what computes
    precision: str
    phase: int  # rows run phase by phase, so that the budget cuts the slow ones (compilation) first
    min_s: float  # below this much budget left the row is not started
    build: Callable[[], Any] | None  # None: a row that says why it has no figure
    note: str = ""  # the reason of a row without a build
    probe: Callable[[], str | None] | None = None  # a quick check: the reason it cannot run here, or None


def _ort(model: Path, providers: tuple[str, ...], threads: int, batch: int, detector: bool = False) -> Any:
    from edgeocr.runtime.detector import OnnxDetector
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

    engine = EngineConfig(intra_op_threads=threads, providers=providers, max_batch_size=batch, strict=True)
    return OnnxDetector(model, engine) if detector else OnnxRecognizer(model, engine)


def _torch_rec(model: Path, threads: int, batch: int, device: str, precision: str, mode: str | None) -> Any:
    from edgeocr.runtime.recognizer import EngineConfig

    engine = EngineConfig(intra_op_threads=threads, max_batch_size=batch)
    return gpulib.torch_line_recognizer(model, engine, device, precision, mode)


def _torch_det(model: Path, threads: int, batch: int, device: str, precision: str, mode: str | None) -> Any:
    from edgeocr.runtime.recognizer import EngineConfig

    engine = EngineConfig(intra_op_threads=threads, max_batch_size=batch)
    return gpulib.torch_detector(model, engine, device, precision, mode)


def _tensorrt(model: Path, batch: int, precision: str) -> Any:
    from edgeocr.runtime.engines import TensorRtRecognizer
    from edgeocr.runtime.recognizer import EngineConfig

    return TensorRtRecognizer(model, EngineConfig(max_batch_size=batch), precision=precision)


def _ort_tensorrt(model: Path, threads: int, batch: int) -> Any:
    os.environ.setdefault("ORT_TENSORRT_FP16_ENABLE", "1")  # the TensorRT provider reads its options from here
    providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    return _ort(model, providers, threads, batch)


def _provider_missing(provider: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if provider in available:
            return None
        return (
            f"ONNX Runtime {ort.__version__} here offers {', '.join(available)}, not {provider}: it needs the "
            "onnxruntime-gpu wheel (about 256 MB, over the call's 64 MiB carry; see scripts/gpu/README.md)"
        )

    return probe


def _tensorrt_missing() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return (
            "tensorrt is not installed here (its wheels, tensorrt-cu12/cu13 and their libs, are over 1 GB: "
            "they cannot travel in the 64 MiB carry)"
        )
    return None


def plan(args: argparse.Namespace, models: dict[str, Path], detector: Path) -> list[Variant]:
    """The rows of this run, in the order they are measured."""
    batch = max(args.batches)
    t = args.threads
    cpu_only = ("CPUExecutionProvider",)
    cuda = ("CUDAExecutionProvider", "CPUExecutionProvider")
    compile_note = None
    if args.no_compile:
        compile_note = "skipped: --no-compile"
    elif args.smoke:
        compile_note = "skipped: --smoke (torch.compile takes minutes on a CPU)"
    rows: list[Variant] = []

    def add(component: str, model: str, name: str, engine: str, machine: str, precision: str, phase: int, **kw):
        rows.append(Variant(component, model, name, engine, machine, precision, phase, **kw))

    def bind(fn: Callable, *a: Any) -> Callable[[], Any]:
        return lambda: fn(*a)

    gpu = args.device == "cuda"
    dev = "cuda" if gpu else "cpu"
    where = "gpu" if gpu else "cpu"
    # The torch rows, the same for every model: eager at each precision (bf16 on a CPU runs under
    # autocast), then one compiled row (CUDA graphs on a GPU).
    eager = [
        (p, f"torch eager {p}" + (" (CPU autocast)" if p == "bf16" and not gpu else ""))
        for p in (("fp32", "fp16", "bf16") if gpu else ("fp32", "bf16"))
    ]
    mode = "reduce-overhead" if gpu else "default"
    cprec = "fp16" if gpu else "fp32"
    compiled = f"torch.compile {mode}{' (CUDA graphs)' if gpu else ''} {cprec}"
    for name, path in models.items():
        int8 = name.endswith("int8")
        add(
            "recogniser",
            name,
            "onnxruntime CPU",
            "onnxruntime",
            "cpu",
            "int8" if int8 else "fp32",
            1,
            min_s=20,
            build=bind(_ort, path, cpu_only, t, batch),
        )
        if gpu:
            add(
                "recogniser",
                name,
                "onnxruntime CUDA",
                "onnxruntime",
                "gpu",
                "int8" if int8 else "fp32",
                1,
                min_s=15,
                build=bind(_ort, path, cuda, t, batch),
                probe=_provider_missing("CUDAExecutionProvider"),
            )
            add(
                "recogniser",
                name,
                "onnxruntime TensorRT EP fp16",
                "onnxruntime",
                "gpu",
                "fp16",
                3,
                min_s=60,
                build=bind(_ort_tensorrt, path, t, batch),
                probe=_provider_missing("TensorrtExecutionProvider"),
            )
        for precision, label in eager:
            add(
                "recogniser",
                name,
                label,
                "torch",
                where,
                precision,
                1,
                min_s=15,
                build=bind(_torch_rec, path, t, batch, dev, precision, None),
            )
        add(
            "recogniser",
            name,
            compiled,
            "torch",
            where,
            cprec,
            2,
            min_s=90 if gpu else 240,
            build=None if compile_note else bind(_torch_rec, path, t, batch, dev, cprec, mode),
            note=compile_note or "",
        )
        if gpu:
            add(
                "recogniser",
                name,
                "tensorrt fp16",
                "tensorrt",
                "gpu",
                "fp16",
                3,
                min_s=90,
                build=bind(_tensorrt, path, batch, "fp16"),
                probe=_tensorrt_missing,
            )
            add(
                "recogniser",
                name,
                "tensorrt int8",
                "tensorrt",
                "gpu",
                "int8",
                3,
                min_s=0,
                build=None,
                note="n/a: TensorRT int8 reads QDQ graphs (explicit quantisation); no shipped model is QDQ "
                "(fast-int8 is QOperator): `edgeocr optimize --int8 --quant-format qdq` makes one",
            )
    add(
        "detector",
        DETECTOR,
        "onnxruntime CPU",
        "onnxruntime",
        "cpu",
        "fp32",
        1,
        min_s=30,
        build=bind(_ort, detector, cpu_only, t, batch, True),
    )
    if gpu:
        add(
            "detector",
            DETECTOR,
            "onnxruntime CUDA",
            "onnxruntime",
            "gpu",
            "fp32",
            1,
            min_s=15,
            build=bind(_ort, detector, cuda, t, batch, True),
            probe=_provider_missing("CUDAExecutionProvider"),
        )
    for precision, label in eager:
        add(
            "detector",
            DETECTOR,
            label,
            "torch",
            where,
            precision,
            1,
            min_s=20,
            build=bind(_torch_det, detector, t, batch, dev, precision, None),
        )
    add(
        "detector",
        DETECTOR,
        compiled,
        "torch",
        where,
        cprec,
        2,
        min_s=90 if gpu else 240,
        build=None if compile_note else bind(_torch_det, detector, t, batch, dev, cprec, mode),
        note=compile_note or "",
    )

    # Cheap rows of every model first (the detector after the recognisers), then the compiled ones, the
    # default recogniser's first, the accurate one's, the detector's, the fast one's; TensorRT last.
    def key(r: Variant) -> tuple:
        rank = {"default": 0, "accurate": 1, "fast": 3, "fast-int8": 4}.get(r.model, 9)
        if r.component == "detector":
            rank = 2 if r.phase == 2 else 5
        return (r.phase, rank)

    return sorted(rows, key=key)


# --- data ------------------------------------------------------------------------------------------


@dataclass
class LineSet:
    name: str
    path: str
    samples: list
    images: list
    labels_sha256: str


@dataclass
class SceneSet:
    name: str
    path: str
    items: list
    annotations_sha256: str | None


def _set_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name == "realdev" else path.name


def load_lines(path: Path, limit: int | None, name: str | None = None) -> LineSet:
    from edgeocr.core.sidecar import sha256_hex
    from edgeocr.data.labels import read_labels
    from edgeocr.measure.evaluate import load_images

    samples, _ = read_labels(path, strict=True)
    samples = samples[:limit] if limit else samples
    labels = (path / "labels.tsv").read_bytes()
    return LineSet(name or _set_name(path), str(path), samples, load_images(samples), sha256_hex(labels))


def load_scenes(path: Path, limit: int | None, scale: float = 1.0) -> SceneSet:
    """A scene folder's usable scenes; ``scale`` < 1 shrinks images and polygons (``--smoke`` only)."""
    import cv2

    from edgeocr.core.sidecar import sha256_hex
    from edgeocr.data.datasets import SkippedSample
    from edgeocr.data.scene_dataset import SceneItem, open_scene_dataset

    folder = open_scene_dataset(path)
    items = [folder[i] for i in range(len(folder))]
    items = [item for item in items if not isinstance(item, SkippedSample)]
    items = items[:limit] if limit else items
    if scale != 1.0:
        items = [
            SceneItem(
                image=cv2.resize(item.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
                polys=[poly * scale for poly in item.polys],
                ignore=item.ignore,
                exhaustive=item.exhaustive,
                source=item.source,
            )
            for item in items
        ]
    annotations = Path(folder.listing)
    digest = sha256_hex(annotations.read_bytes()) if annotations.is_file() else None
    return SceneSet(_set_name(path), str(path), items, digest)


def prepare_data(args: argparse.Namespace, work: Path) -> tuple[LineSet, list[LineSet], list[SceneSet], dict]:
    """The synthetic test lines, the real crop sets and the scene sets (carried, given, or rendered now)."""
    limit = SMOKE_LINES if args.smoke else args.max_lines
    notes = {}
    carried = gpulib.CARRY / "lines" / "synth-lines"
    lines_dir = args.lines or (carried if carried.is_dir() else None)
    if lines_dir is None:
        from edgeocr.optimize.calibration import EVAL_SEED, render_lines

        count = SMOKE_LINES if args.smoke else args.synthetic
        lines_dir = render_lines(count, EVAL_SEED, work / "synth-lines")
        notes["synthetic"] = f"rendered now: {count} lines, seed {EVAL_SEED}"
    synthetic = load_lines(lines_dir, limit, name="synthetic")
    realdev_dirs = args.realdev
    if realdev_dirs is None:
        realdev_dirs = [
            p for p in (gpulib.CARRY / "realdev" / "industrial", gpulib.CARRY / "realdev" / "words") if p.is_dir()
        ]
    real = [load_lines(Path(p), limit) for p in realdev_dirs]
    scene_dirs = args.scenes
    if scene_dirs is None:
        scene_dirs = [
            p
            for p in (gpulib.CARRY / "scenes" / "realdev" / "scenes", gpulib.CARRY / "scenes" / "synth-scenes")
            if p.is_dir()
        ]
    scene_limit = 1 if args.smoke else None
    scenes = [load_scenes(Path(p), scene_limit, SMOKE_SCENE_SCALE if args.smoke else 1.0) for p in scene_dirs]
    if not scenes:
        from edgeocr.data.scene_dataset import render_synthetic_scenes

        count = 1 if args.smoke else SYNTHETIC_SCENES
        rendered = render_synthetic_scenes(count, SCENE_SEED)
        scenes = [SceneSet("synth-scenes", f"rendered now: {count} scenes, seed {SCENE_SEED}", list(rendered), None)]
    return synthetic, real, scenes, notes


def cycle(items: Sequence, count: int) -> list:
    return [items[i % len(items)] for i in range(count)] if items else []


def one_width_lines(images: Sequence, height: int, multiple: int) -> Any:
    """A gray line of ``LINE_ASPECT`` x ``height`` px made from a real line (one padded width for all)."""
    import cv2

    width = max(multiple, LINE_ASPECT * height // multiple * multiple)
    image = images[0] if images[0].ndim == 2 else cv2.cvtColor(images[0], cv2.COLOR_BGR2GRAY)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), width


# --- measuring ---------------------------------------------------------------------------------------


WARMUP_LINES = 8  # the light warm-up: this many reads at batch 1, then one call per batch size


def full_warmup(variant: Variant) -> bool:
    """Whether each new input shape costs the engine something worth keeping out of the timings: a
    compilation and CUDA graph capture (torch.compile), an algorithm search (ONNX Runtime CUDA, TensorRT)
    or a oneDNN primitive (CPU torch: a first read of a new width took over a second here)."""
    return (
        variant.phase == 2
        or variant.engine == "tensorrt"
        or (variant.engine == "onnxruntime" and variant.machine == "gpu")
        or (variant.engine == "torch" and variant.machine == "cpu")
    )


class _Batches:
    """What :func:`edgeocr.measure.timing.measure_throughput` needs of an engine."""

    batches = True

    def __init__(self, read_batch: Callable[[Sequence], Any]) -> None:
        self.read_batch = read_batch


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _accuracy(result: dict) -> dict:
    keys = ("n", "char_accuracy", "exact_match", "char_accuracy_relaxed", "exact_match_relaxed")
    out = {k: result[k] for k in keys if k in result}
    out.update(latency_ms_p50=result.get("latency_ms_p50"), latency_ms_p95=result.get("latency_ms_p95"))
    return out


def _torch_cuda_reset(gpu: bool) -> None:
    if gpu:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _torch_cuda_peak(gpu: bool) -> float | None:
    if not gpu:
        return None
    import torch

    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def measure_recogniser(rec: Any, variant: Variant, data: dict, args: argparse.Namespace) -> dict:
    from edgeocr.measure.evaluate import evaluate_samples
    from edgeocr.measure.resources import ResourceSampler
    from edgeocr.measure.timing import measure_throughput

    synthetic: LineSet = data["synthetic"]
    sets: list[LineSet] = [synthetic, *data["real"]]
    cfg = rec.config
    fixed_image, fixed_width = one_width_lines(synthetic.images, cfg.input_height, cfg.width_multiple)
    count = max(len(synthetic.images), args.throughput_lines)
    mixed = cycle(synthetic.images, count)
    fixed = [fixed_image] * count
    gpu = variant.machine == "gpu"
    # Warm-up, not timed. Where each new input shape costs something (see full_warmup): every line once
    # at batch 1 and every batch once, so that the timed reads see none of it; elsewhere a few of each.
    start = time.perf_counter()
    full = full_warmup(variant)
    for image in [img for s in sets for img in s.images][: None if full else WARMUP_LINES]:
        rec.recognize([image])
    for size in args.batches:
        for images in (mixed, fixed):
            for first in range(0, len(images) if full else 1, size):
                rec.recognize(images[first : first + size])
    warmup_s = time.perf_counter() - start

    def read(image: Any) -> tuple[str, float]:
        line = rec.recognize([image])[0]
        return line.text, line.confidence

    _torch_cuda_reset(variant.engine == "torch" and gpu)
    with ResourceSampler() as resources, gpulib.GpuSampler(enabled=args.device == "cuda") as gpu_use:
        accuracy = {s.name: _accuracy(evaluate_samples(read, s.samples)) for s in sets}
        reader = measure_throughput(_Batches(rec.recognize), mixed, args.batches)
        one_width = measure_throughput(_Batches(rec.recognize), fixed, args.batches)
    return {
        "warmup_s": round(warmup_s, 3),
        "warmup": "every shape" if full else f"{WARMUP_LINES} reads and one call per batch size",
        "latency_ms_p50": accuracy["synthetic"]["latency_ms_p50"],
        "latency_ms_p95": accuracy["synthetic"]["latency_ms_p95"],
        "throughput": reader,
        "throughput_one_width": one_width,
        "one_width_px": fixed_width,
        "throughput_lines": count,
        "accuracy": accuracy,
        "resources": _resources(resources.result, gpu_use.result, _torch_cuda_peak(variant.engine == "torch" and gpu)),
        "providers": getattr(rec, "providers", None) if variant.engine == "onnxruntime" else None,
    }


def measure_detector(det: Any, variant: Variant, data: dict, args: argparse.Namespace) -> dict:
    import cv2

    from edgeocr.core.detection import prepare_image, stack_inputs, to_bgr
    from edgeocr.measure.detection_metrics import DetectionCounts, count_detections
    from edgeocr.measure.resources import ResourceSampler
    from edgeocr.measure.timing import measure_throughput, percentile

    scene_sets: list[SceneSet] = data["scenes"]
    all_images = [item.image for s in scene_sets for item in s.items]
    count = max(args.batches)
    mixed = cycle(all_images, count)
    height, width = SMOKE_DETECTOR_SHAPE if args.smoke else DETECTOR_SHAPE
    frame = prepare_image(cv2.resize(to_bgr(all_images[0]), (width, height), interpolation=cv2.INTER_AREA), det.config)
    gpu = variant.machine == "gpu"
    start = time.perf_counter()  # warm-up, as for the recognisers
    full = full_warmup(variant)
    for image in all_images[: None if full else WARMUP_LINES]:
        det.detect(image)
    for size in args.batches:
        for first in range(0, len(mixed) if full else 1, size):
            det.detect_batch(mixed[first : first + size])
        det.probability_maps(stack_inputs([frame] * size))
    warmup_s = time.perf_counter() - start
    _torch_cuda_reset(variant.engine == "torch" and gpu)
    with ResourceSampler() as resources, gpulib.GpuSampler(enabled=args.device == "cuda") as gpu_use:
        quality = {}
        first_latencies: list[float] = []
        for scene_set in scene_sets:
            counts, latencies = DetectionCounts(), []
            for item in scene_set.items:
                begin = time.perf_counter()
                lines = det.detect(item.image)
                latencies.append(1000 * (time.perf_counter() - begin))
                counts += count_detections([ln.poly for ln in lines], item.polys, item.ignore, item.exhaustive)
            quality[scene_set.name] = {
                **{k: round(v, 6) if isinstance(v, float) else v for k, v in counts.as_dict().items()},
                "latency_ms_p50": percentile(latencies, 50),
                "latency_ms_p95": percentile(latencies, 95),
            }
            first_latencies += latencies
        reader = measure_throughput(_Batches(det.detect_batch), mixed, args.batches)
        network = {}
        for size in args.batches:
            batch = stack_inputs([frame] * size)
            det.probability_maps(batch)
            repeats = max(1, count // size)
            begin = time.perf_counter()
            for _ in range(repeats):
                det.probability_maps(batch)
            network[str(size)] = round(repeats * size / (time.perf_counter() - begin), 2)
    return {
        "warmup_s": round(warmup_s, 3),
        "warmup": "every shape" if full else f"{WARMUP_LINES} reads and one call per batch size",
        "latency_ms_p50": percentile(first_latencies, 50),
        "latency_ms_p95": percentile(first_latencies, 95),
        "throughput": reader,
        "throughput_network": network,
        "network_shape": [height, width],  # (height, width) of the network-only frames
        "throughput_images": count,
        "detection": quality,
        "resources": _resources(resources.result, gpu_use.result, _torch_cuda_peak(variant.engine == "torch" and gpu)),
    }


def _resources(process: dict, gpu: dict, torch_peak: float | None) -> dict:
    return {
        "cpu_percent_mean": process["cpu_percent_mean"],
        "rss_peak_mb": process["rss_peak_mb"],
        "wall_s": process["wall_s"],
        "gpu": gpu or None,
        "torch_cuda_peak_mib": torch_peak,
    }


def release(gpu: bool, compiled: bool) -> None:
    gc.collect()
    if compiled:
        import torch

        torch._dynamo.reset()
        try:  # the CUDA graphs' memory pools (torch.compile mode reduce-overhead)
            from torch._inductor import cudagraph_trees

            cudagraph_trees.reset_cudagraph_trees()
        except Exception:  # another torch version: the pools go with the process
            pass
    if gpu:
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def run_variant(variant: Variant, data: dict, args: argparse.Namespace, deadline: gpulib.Deadline) -> dict:
    from edgeocr.runtime.providers import EngineUnavailable

    row: dict[str, Any] = {
        "component": variant.component,
        "model": variant.model,
        "variant": variant.name,
        "engine": variant.engine,
        "machine": variant.machine,
        "precision": variant.precision,
        "where": data["labels"][variant.machine],
    }
    if variant.build is None:
        status = "skipped" if variant.note.startswith("skipped") else "n/a"
        return {**row, "status": status, "reason": variant.note}
    reason = variant.probe() if variant.probe is not None else None
    if reason is not None:
        return {**row, "status": "not available", "reason": reason}
    if deadline.left() < variant.min_s:
        return {
            **row,
            "status": "not run",
            "reason": f"time budget: {deadline.left():.0f} s of --budget-s {deadline.budget_s:.0f} left, "
            f"this row needs about {variant.min_s:.0f} s",
        }
    start = time.perf_counter()
    engine = None
    try:
        engine = variant.build()
        row["load_s"] = round(time.perf_counter() - start, 3)
        measure = measure_recogniser if variant.component == "recogniser" else measure_detector
        row.update(measure(engine, variant, data, args))
        row["status"] = "ok"
    except EngineUnavailable as exc:
        text = str(exc)
        row.update(status="n/a" if text.startswith("n/a") else "not available", reason=text)
    except Exception as exc:  # any failure is the row's, recorded with its cause; the table goes on
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:2000])
        row["traceback_tail"] = traceback.format_exc().splitlines()[-6:]
    finally:
        del engine
        try:
            release(variant.machine == "gpu", variant.phase == 2 and variant.engine == "torch")
        except Exception as exc:  # a broken device after a failure: recorded, the next rows say the rest
            row.setdefault("release_error", str(exc))
    row["row_s"] = round(time.perf_counter() - start, 3)
    return row


# --- the table --------------------------------------------------------------------------------------


def _pct(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _short_where(row: dict, run: dict) -> str:
    machine = run["machine"]
    if row["machine"] == "gpu":
        return f"GPU {machine['gpu']}"
    return f"CPU {machine['cpu_model']} ({machine['usable_cores']} cores)"


def _gpu_cells(row: dict) -> tuple[str, str, str]:
    res = row.get("resources") or {}
    gpu = res.get("gpu") or {}
    return (
        _num(res.get("cpu_percent_mean"), 0),
        _num(gpu.get("util_percent_mean"), 0) if gpu.get("samples") else "",
        _num(gpu.get("memory_used_mib_peak"), 0) if gpu.get("samples") else "",
    )


def _by_model(runs: Sequence[dict], component: str) -> list[tuple[dict, dict]]:
    """(run, row) of ``component``, model by model (shipped order), each model's rows run by run, in order."""
    order = {name: i for i, name in enumerate(RECOGNISERS)}
    pairs = [
        (order.get(row["model"], len(order)), r, j, row)
        for r, run in enumerate(runs)
        for j, row in enumerate(run["rows"])
        if row["component"] == component
    ]
    return [(runs[r], row) for _, r, _, row in sorted(pairs, key=lambda p: p[:3])]


def markdown(runs: Sequence[dict]) -> str:
    """The table of one or several runs (this one and ``--beside`` ones), each row naming its machine."""
    batches = sorted({b for run in runs for b in run["batches"]})
    line_sets = list(dict.fromkeys(name for run in runs for name in run["data"]["line_sets"]))
    scene_sets = list(dict.fromkeys(name for run in runs for name in run["data"]["scene_sets"]))
    out = ["# CPU against GPU: the shipped recognisers and detector", ""]
    out.append("Machines (each row's `where` names which one gave it):")
    out.append("")
    for run in runs:
        m = run["machine"]
        out.append(
            f"- **{m['gpu_label'] or m['cpu_label']}**: `{run['argv']}` on {run['environment']['date']}, "
            f"commit {str((run['environment'].get('git') or {}).get('commit'))[:12]}, python "
            f"{run['environment']['python']}, torch {run['software'].get('torch')}, onnxruntime "
            f"{run['software'].get('onnxruntime')} ({', '.join(run['software'].get('onnxruntime_providers') or [])})"
            + (" — **smoke run: tiny counts, not a measurement**" if run.get("smoke") else "")
        )
    out += ["", "## Recognisers", ""]
    out.append(
        "p50 / p95: ms per crop at batch 1. lines/s bN: N lines per call as they come (the runtime groups "
        "lines of one padded width, so a batch is several network calls); 'one width': N lines of one "
        "width per call. Accuracy cells: strict char / relaxed char / relaxed exact %. CPU %: the process "
        "(100 = one core); GPU % and MiB: NVML (whole device)."
    )
    out.append("")
    head = ["model", "variant", "where", "p50 ms", "p95 ms"]
    head += [f"lines/s b{b}" for b in batches] + [f"one width b{batches[-1]}"]
    head += [f"{name} %" for name in line_sets] + ["CPU %", "GPU %", "GPU MiB", "status"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for run, row in _by_model(runs, "recogniser"):
        cells = [row["model"], row["variant"], _short_where(row, run)]
        if row["status"] == "ok":
            acc = row["accuracy"]
            cells += [_num(row["latency_ms_p50"]), _num(row["latency_ms_p95"])]
            cells += [_num(row["throughput"].get(str(b)), 0) for b in batches]
            cells.append(_num(row["throughput_one_width"].get(str(batches[-1])), 0))
            for name in line_sets:
                a = acc.get(name)
                cells.append(
                    f"{_pct(a['char_accuracy'])} / {_pct(a['char_accuracy_relaxed'])} / "
                    f"{_pct(a['exact_match_relaxed'], 0)}"
                    if a
                    else ""
                )
            cells += [*_gpu_cells(row), "ok"]
        else:
            cells += [""] * (2 + len(batches) + 1 + len(line_sets) + 3) + [row["status"]]
            notes.append(f"- {row['model']} / {row['variant']} ({_short_where(row, run)}): {row.get('reason')}")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Detector", ""]
    out.append(
        "p50 / p95: ms per image at batch 1 (preprocessing, network, boxes). images/s bN: N images per call; "
        "'network': the network alone on N frames of the row's network_shape (640x480; smaller in smoke runs). Scene cells: "
        "precision / recall / hmean % at IoU 0.5."
    )
    out.append("")
    head = ["model", "variant", "where", "p50 ms", "p95 ms"]
    head += [f"images/s b{b}" for b in batches] + [f"network b{b}" for b in batches]
    head += [f"{name} %" for name in scene_sets] + ["CPU %", "GPU %", "GPU MiB", "status"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, row in _by_model(runs, "detector"):
        cells = [row["model"], row["variant"], _short_where(row, run)]
        if row["status"] == "ok":
            cells += [_num(row["latency_ms_p50"]), _num(row["latency_ms_p95"])]
            cells += [_num(row["throughput"].get(str(b)), 1) for b in batches]
            cells += [_num(row["throughput_network"].get(str(b)), 1) for b in batches]
            for name in scene_sets:
                d = row["detection"].get(name)
                cells.append(f"{_pct(d['precision'])} / {_pct(d['recall'])} / {_pct(d['hmean'])}" if d else "")
            cells += [*_gpu_cells(row), "ok"]
        else:
            cells += [""] * (2 + 2 * len(batches) + len(scene_sets) + 3) + [row["status"]]
            notes.append(f"- detector / {row['variant']} ({_short_where(row, run)}): {row.get('reason')}")
        out.append("| " + " | ".join(cells) + " |")
    if notes:
        out += ["", "## Rows without figures", "", *notes]
    out += ["", "## Data", ""]
    for run in runs:
        for name, info in {**run["data"]["line_sets"], **run["data"]["scene_sets"]}.items():
            out.append(
                f"- {run['machine']['hostname']}: **{name}**: {info['n']} from `{info['path']}` ({info['sha256']})"
            )
    return "\n".join(out) + "\n"


def write(out: Path, result: dict, beside: Sequence[dict]) -> None:
    gpulib.write_json_atomic(out / "table.json", result)
    gpulib.write_text_atomic(out / "table.md", markdown([*beside, result]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        required=True,
        help="cuda: the GPU rows (and the host's ONNX Runtime CPU rows)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for table.json and table.md (default $OUT, else build/gpu/call1)"
    )
    parser.add_argument("--models", default=",".join(RECOGNISERS), help="shipped recogniser names or .onnx paths")
    parser.add_argument(
        "--lines",
        type=Path,
        help="synthetic test lines, labels.tsv folder (default: scripts/gpu/carry/lines/synth-lines, else rendered now)",
    )
    parser.add_argument(
        "--realdev",
        type=Path,
        action="append",
        help="a real labelled crop folder (repeatable; default: scripts/gpu/carry/realdev/industrial and words)",
    )
    parser.add_argument(
        "--scenes",
        type=Path,
        action="append",
        help="a scene folder with annotations.jsonl (repeatable; default: scripts/gpu/carry/scenes/realdev/scenes and synth-scenes)",
    )
    parser.add_argument(
        "--synthetic", type=int, default=SYNTHETIC_LINES, help="lines to render when no --lines folder exists"
    )
    parser.add_argument("--max-lines", type=int, default=None, help="use at most this many lines of each set")
    parser.add_argument("--batches", default="32,64,256", help="throughput batch sizes")
    parser.add_argument("--throughput-lines", type=int, default=1024, help="lines per throughput pass")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for ONNX Runtime and torch (0: all)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no row after this many seconds (default: cuda 400, cpu 3600)",
    )
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument(
        "--only",
        default="",
        help="keep the rows whose 'component variant' contains one of these comma-separated words "
        "(e.g. torch.compile, or detector)",
    )
    parser.add_argument(
        "--beside",
        type=Path,
        action="append",
        default=[],
        help="table.json of another run to show in the same table.md",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts (2 lines a set, 1 scene a set, batches 1,2): checks the script, measures nothing",
    )
    args = parser.parse_args(argv)
    started = time.time()
    try:
        device = gpulib.require_device(args.device)
    except gpulib.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from edgeocr.core.errors import EdgeOCRError
    from edgeocr.measure.resources import environment
    from edgeocr.measure.timing import parse_batches
    from edgeocr.runtime.models import resolve_detector, resolve_model

    args.batches = (1, 2) if args.smoke else parse_batches(args.batches)
    if args.smoke:
        args.throughput_lines = SMOKE_LINES
    args.budget_s = args.budget_s or (400.0 if args.device == "cuda" else 3600.0)
    out = args.out or gpulib.default_out("call1")
    out.mkdir(parents=True, exist_ok=True)
    deadline = gpulib.Deadline(args.budget_s)
    beside = [json.loads(p.read_text(encoding="utf-8")) for p in args.beside if p.is_file()]
    try:
        models = {name: resolve_model(name) for name in args.models.split(",") if name.strip()}
        detector = resolve_detector(DETECTOR)
        with tempfile.TemporaryDirectory(prefix="edgeocr-call1-") as tmp:
            synthetic, real, scenes, notes = prepare_data(args, Path(tmp))
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    machine = gpulib.machine_info(device)
    data = {
        "synthetic": synthetic,
        "real": real,
        "scenes": scenes,
        "labels": {"cpu": machine["cpu_label"], "gpu": machine["gpu_label"]},
    }
    result: dict[str, Any] = {
        "format": FORMAT,
        "device": args.device,
        "smoke": args.smoke,
        "argv": " ".join(["call1_table.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "device_info": device,
        "software": gpulib.torch_versions(),
        "environment": environment(),
        "batches": list(args.batches),
        "budget_s": args.budget_s,
        "data": {
            "line_sets": {
                s.name: {"n": len(s.samples), "path": s.path, "sha256": s.labels_sha256} for s in [synthetic, *real]
            },
            "scene_sets": {s.name: {"n": len(s.items), "path": s.path, "sha256": s.annotations_sha256} for s in scenes},
            "notes": notes,
        },
        "rows": [],
    }
    variants = plan(args, models, detector)
    if args.only:  # e.g. a later call that measures only the rows an earlier one had no time for
        variants = [v for v in variants if any(word in f"{v.component} {v.name}" for word in args.only.split(","))]
    print(
        f"{machine['gpu_label'] or machine['cpu_label']}: {len(variants)} rows, budget {args.budget_s:.0f} s",
        flush=True,
    )
    for variant in variants:
        row = run_variant(variant, data, args, deadline)
        result["rows"].append(row)
        result["elapsed_s"] = round(time.time() - started, 1)
        write(out, result, beside)
        figure = (
            f"p50 {row['latency_ms_p50']} ms, {row.get('throughput')}"
            if row["status"] == "ok"
            else row.get("reason", "")[:160]
        )
        print(
            f"[{deadline.elapsed():6.1f} s] {variant.component} {variant.model} | {variant.name}: {row['status']} {figure}",
            flush=True,
        )
    print(f"wrote {out / 'table.json'} and {out / 'table.md'} in {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
