"""How long each preprocessing operation and preset takes on a 640x480 frame.

Times every op of ``edgeocr.core.preprocess`` (OpenCV) and, when torch is installed, its
``edgeocr.optimize.gpu_preprocess`` twin on the CPU and on CUDA when present, after a warm-up,
and prints the median and 95th percentile in milliseconds. Torch inputs are already on the
device and CUDA is synchronised after each call, so the figures are the op alone (no copies);
ops that fall back to OpenCV are marked ``*`` and include their copies.

The frame is synthetic but shaped like a real one: a gray, unevenly lit product surface with
sensor noise, a white label, and three printed code lines tilted by 4 degrees (OpenCV Hershey
fonts, so the figures do not depend on the fonts installed). Single-channel ops get the gray
frame, as after a ``gray`` step; ``gray`` and the presets get the BGR frame.

Usage: ``edgeocr study preprocess-speed --repeats 50 --threads 1 --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeocr.core.preprocess import PRESETS, Gray, Pipeline, parse_pipeline

# (label, pipeline spec, input kind): one row per operation, then one per preset.
OPERATIONS: list[tuple[str, str, str]] = [
    ("gray", "gray", "bgr"),
    ("invert", "invert", "gray"),
    ("gaussian 3x3", "gaussian:ksize=3", "gray"),
    ("gaussian 5x5 s=1.3", "gaussian:ksize=5,sigma=1.3", "gray"),
    ("gaussian 3x3 bgr", "gaussian:ksize=3", "bgr"),
    ("median 3", "median:ksize=3", "gray"),
    ("median 5", "median:ksize=5", "gray"),
    ("clahe clip=2 tile=8", "clahe", "gray"),
    ("equalize", "equalize", "gray"),
    ("otsu", "otsu", "gray"),
    ("adaptive mean 31", "adaptive:method=mean,block=31", "gray"),
    ("adaptive gaussian 31", "adaptive:method=gaussian,block=31", "gray"),
    ("morph close rect 3", "morph:mode=close,ksize=3", "gray"),
    ("morph close ellipse 5", "morph:mode=close,ksize=5,shape=ellipse", "gray"),
    ("polarity", "polarity", "gray"),
    ("deskew (max 15 deg)", "deskew", "gray"),
    ("resize+pad 320x320", "resize:width=320,height=320", "gray"),
    ("resize+pad 960x960", "resize:width=960,height=960", "gray"),
    ("normalize", "normalize", "gray"),
]


def synthetic_frame(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A uint8 BGR frame: lit product surface, a label, three tilted code lines, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 150 + 50 * np.exp(-(((xx - 0.3 * width) / width) ** 2 + ((yy - 0.4 * height) / height) ** 2) * 3)
    frame = np.dstack([light * 0.95, light, light * 1.05])
    cv2.rectangle(
        frame, (int(0.15 * width), int(0.25 * height)), (int(0.85 * width), int(0.75 * height)), (235, 238, 240), -1
    )
    ink = np.zeros((height, width), np.uint8)
    lines = ["LOT 240117-A3", "EXP 2027/03/31", "SN 0042-7781-XK"]
    for i, text in enumerate(lines):
        cv2.putText(
            ink,
            text,
            (int(0.2 * width), int(0.38 * height) + i * 52),
            cv2.FONT_HERSHEY_DUPLEX,
            1.3,
            255,
            2,
            cv2.LINE_AA,
        )
    tilt = cv2.getRotationMatrix2D((width / 2, height / 2), 4.0, 1.0)
    ink = cv2.GaussianBlur(cv2.warpAffine(ink, tilt, (width, height)), (3, 3), 0.7).astype(np.float32) / 255
    frame = frame * (1 - 0.8 * ink[..., None]) + rng.normal(0, 5, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _stats(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1e3
    return {"median_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def _time(fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] | None = None) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return _stats(times)


def _torch_devices() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run(repeats: int, warmup: int, threads: int) -> dict[str, Any]:
    """Time every operation and preset on every backend; returns the figures as plain data."""
    cv2.setNumThreads(threads)
    bgr = synthetic_frame()
    inputs = {"bgr": bgr, "gray": Gray().apply(bgr)}
    rows: list[tuple[str, Pipeline, str]] = [(label, parse_pipeline(spec), kind) for label, spec, kind in OPERATIONS]
    rows += [(f"preset {name}", pipe, "bgr") for name, pipe in PRESETS.items() if pipe.ops]
    devices = _torch_devices()
    backends = ["opencv"] + [f"torch-{d}" for d in devices]
    results: list[dict[str, Any]] = []
    if devices:
        import torch

        torch.set_num_threads(threads)
        from edgeocr.optimize.gpu_preprocess import to_torch_pipeline
    for label, pipe, kind in rows:
        image = inputs[kind]
        row: dict[str, Any] = {
            "operation": label,
            "spec": pipe.spec(),
            "input": kind,
            "opencv": _time(lambda pipe=pipe, image=image: pipe.apply(image), repeats, warmup),
        }
        for device in devices:
            on_torch = to_torch_pipeline(pipe, device)
            tensor = torch.from_numpy(image).to(device)
            sync = torch.cuda.synchronize if device == "cuda" else None
            row[f"torch-{device}"] = {
                **_time(lambda run=on_torch, x=tensor: run(x), repeats, warmup, sync),
                "fallback": bool(on_torch.fallbacks),
            }
        results.append(row)
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "frame": f"{bgr.shape[1]}x{bgr.shape[0]}",
        "opencv_version": cv2.__version__,
        "torch_version": __import__("torch").__version__ if devices else None,
        "cuda_device": __import__("torch").cuda.get_device_name() if "cuda" in devices else None,
        "backends": backends,
        "rows": results,
    }


def _cpu_name() -> str:
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def format_table(figures: dict[str, Any]) -> str:
    """The figures as a fixed-width text table, one row per operation or preset."""
    backends = figures["backends"]
    head = f"{'operation':<28}{'input':<6}" + "".join(f"{b + ' med/p95 ms':>24}" for b in backends)
    lines = [
        f"frame {figures['frame']}, CPU {figures['cpu']} ({figures['cores']} cores), {figures['threads']} thread(s), "
        f"{figures['repeats']} repeats after {figures['warmup']} warm-up; OpenCV {figures['opencv_version']}"
        + (f", torch {figures['torch_version']}" if figures["torch_version"] else ", torch not installed")
        + (f", CUDA {figures['cuda_device']}" if figures["cuda_device"] else ""),
        head,
        "-" * len(head),
    ]
    for row in figures["rows"]:
        cells = []
        for backend in backends:
            stats = row[backend]
            mark = "*" if stats.get("fallback") else " "
            cells.append(f"{stats['median_ms']:>10.3f} / {stats['p95_ms']:<9.3f}{mark}".rjust(24))
        lines.append(f"{row['operation']:<28}{row['input']:<6}" + "".join(cells))
    if len(backends) > 1:
        lines.append("* runs through OpenCV on the host (clahe, deskew, adaptive gaussian), copies included")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per operation and backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1, --warmup at least 0")
    figures = run(args.repeats, args.warmup, args.threads)
    print(format_table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
