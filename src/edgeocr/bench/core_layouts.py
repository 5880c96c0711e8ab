"""Throughput of recognisers on C cores, laid out two ways, side by side in one run.

A 2-core box can spend its cores on one ONNX Runtime session with 2 intra-op threads, or on 2
workers with 1 thread each sharing one session (what ``edgeocr serve --threads 1 --workers 2`` and
a batch job with two readers do). Which is faster depends on the model: convolutions split well
across threads, an LSTM's time steps do not. A speed ratio between two models is only fair when
each runs in its own best layout, so this measures every model in both layouts, alternating models
and layouts round by round (a moment of contention from elsewhere then hits every configuration
alike), keeps the median round, and reports each model's best layout and the ratio of the best
figures.

    edgeocr study core-layouts --models default build/optimize/X/model.onnx \\
        --data build/synth-test-20261121-5000 --cores 2 --batch 64 --out build/bench/core-layouts.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeocr.bench.peers import EdgeOcrEngine
from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.data.labels import read_labels
from edgeocr.measure.evaluate import load_images
from edgeocr.measure.resources import environment
from edgeocr.measure.timing import measure_throughput


def layouts(cores: int) -> dict[str, tuple[int, int]]:
    """{name: (intra-op threads, workers)} for the two ways of filling ``cores``."""
    if cores < 1:
        raise ValueError(f"cores must be at least 1, got {cores}")
    if cores == 1:
        return {"1x1": (1, 1)}
    return {f"1 session x {cores} threads": (cores, 1), f"{cores} workers x 1 thread": (1, cores)}


def measure(models: list[str], data: Path, cores: int, batch: int, lines: int, rounds: int) -> dict:
    samples, _ = read_labels(data, strict=True)
    images = load_images(samples[:lines])
    engines = {
        (model, name): EdgeOcrEngine(model, threads, max_batch_size=batch)
        for model in models
        for name, (threads, _) in layouts(cores).items()
    }
    for engine in engines.values():
        engine.load()
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in engines}
    for _ in range(rounds):
        for (model, name), engine in engines.items():
            workers = layouts(cores)[name][1]
            rates[(model, name)].append(float(measure_throughput(engine, images, (batch,), workers)[str(batch)]))
    result: dict = {
        "data": str(data),
        "lines": len(images),
        "batch": batch,
        "cores": cores,
        "rounds": rounds,
        "models": {},
        "environment": environment(),
    }
    for model in models:
        per_layout = {
            name: {"lines_per_s": float(np.median(rates[(model, name)])), "rounds": rates[(model, name)]}
            for name in layouts(cores)
        }
        best = max(per_layout, key=lambda name: per_layout[name]["lines_per_s"])
        result["models"][model] = {
            "layouts": per_layout,
            "best_layout": best,
            "best_lines_per_s": per_layout[best]["lines_per_s"],
        }
    base = result["models"][models[0]]["best_lines_per_s"]
    for model in models:
        entry = result["models"][model]
        entry["best_vs_first_model"] = round(entry["best_lines_per_s"] / base, 3)
        entry["per_layout_vs_first_model"] = {
            name: round(
                entry["layouts"][name]["lines_per_s"] / result["models"][models[0]]["layouts"][name]["lines_per_s"], 3
            )
            for name in layouts(cores)
        }
    return result


def markdown(result: dict) -> str:
    names = list(layouts(result["cores"]))
    lines = [
        f"| model | {' | '.join(names)} | best layout | best vs {next(iter(result['models']))} |",
        "|---" * (3 + len(names)) + "|",
    ]
    for model, entry in result["models"].items():
        cells = [f"{entry['layouts'][n]['lines_per_s']:.0f} lines/s" for n in names]
        lines.append(
            f"| {model} | {' | '.join(cells)} | {entry['best_layout']} | {entry['best_vs_first_model']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="shipped names or .onnx paths; the first is the reference of the ratios",
    )
    parser.add_argument("--data", type=Path, required=True, help="labels.tsv folder of line crops")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lines", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.models, args.data, args.cores, args.batch, args.lines, args.rounds)
    table = markdown(result)
    print(table)
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps({**result, "markdown": table}, indent=1) + "\n").encode())
