"""How fast the synthetic data engine feeds training: line crops per second.

Measures, side by side in one run, with W worker processes (fork, one OpenCV thread each):

* ``in-memory``: crops generated and handed back to the parent as arrays, as an on-the-fly training
  data loader consumes them;
* ``to-disk``: the full ``edgeocr synth lines`` path (PNG encoding, files, labels.tsv).

Glyph caches are warmed before timing starts (as ``edgeocr synth`` does for large runs); the warm-up
time is printed separately. Usage: ``edgeocr study synth-speed --workers 2 --count 6000``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgeocr.core.charset import DEFAULT_CHARSET
from edgeocr.synth.fonts import discover_fonts
from edgeocr.synth.ink import warm_glyph_cache
from edgeocr.synth.lines import LineSynthConfig, LineSynthesizer
from edgeocr.synth.processes import FOURTEEN_SEGMENT_CHARS
from edgeocr.synth.templates import load_catalogue

_gen: LineSynthesizer | None = None


def _init(seed: int) -> None:
    global _gen
    _gen = LineSynthesizer(load_catalogue(), discover_fonts(), seed)


def _generate(bounds: tuple[int, int]) -> list[np.ndarray]:
    assert _gen is not None
    return [_gen.sample(i).image for i in range(*bounds)]


def warm_caches() -> float:
    start = time.perf_counter()
    fonts = discover_fonts()
    caps = LineSynthConfig().cap_height
    warm_glyph_cache(list(fonts.text + fonts.dot), DEFAULT_CHARSET, caps, stroke=False)
    warm_glyph_cache(list(fonts.bold), DEFAULT_CHARSET, caps, stroke=True)
    warm_glyph_cache(
        list(fonts.seven_segment + fonts.fourteen_segment), "".join(sorted(FOURTEEN_SEGMENT_CHARS)), caps, stroke=False
    )
    return time.perf_counter() - start


def in_memory_rate(count: int, workers: int, seed: int) -> float:
    bounds = [(s, min(s + 64, count)) for s in range(0, count, 64)]
    cv2.setNumThreads(1)  # inherited by the forked workers (see synth.dataset)
    with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(seed,)) as pool:
        pool.map(_generate, [(count + i * 64, count + i * 64 + 8) for i in range(workers)])  # start workers
        start = time.perf_counter()
        n = sum(len(images) for images in pool.imap(_generate, bounds))
        return n / (time.perf_counter() - start)


def to_disk_rate(count: int, workers: int, seed: int) -> float:
    from edgeocr.synth.dataset import SynthJob, synthesize

    tmp = Path(tempfile.mkdtemp(prefix="edgeocr-bench-"))
    try:
        result = synthesize(
            SynthJob(kind="lines", count=count, seed=seed, out=tmp / "lines", workers=workers), progress=False
        )
        return result.rate
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    warm = warm_caches()
    memory = [in_memory_rate(args.count, args.workers, args.seed) for _ in range(args.repeats)]
    disk = [to_disk_rate(args.count, args.workers, args.seed) for _ in range(args.repeats)]
    cpu = (
        next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
            platform.processor(),
        )
        if os.path.exists("/proc/cpuinfo")
        else platform.processor()
    )
    figures = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "workers": args.workers,
        "count": args.count,
        "glyph_warmup_s": round(warm, 2),
        "in_memory_crops_per_s": {"median": round(float(np.median(memory))), "runs": [round(r) for r in memory]},
        "to_disk_crops_per_s": {"median": round(float(np.median(disk))), "runs": [round(r) for r in disk]},
    }
    print(f"CPU: {cpu} ({os.cpu_count()} cores), {args.workers} worker processes, {args.count} crops per run")
    print(f"glyph cache warm-up (once per run): {warm:.2f} s")
    print(
        f"line crops/s, in memory (on-the-fly training): median {figures['in_memory_crops_per_s']['median']}"
        f"  runs {figures['in_memory_crops_per_s']['runs']}"
    )
    print(
        f"line crops/s, to disk (PNG + labels.tsv):      median {figures['to_disk_crops_per_s']['median']}"
        f"  runs {figures['to_disk_crops_per_s']['runs']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
