"""``edgeocr study cascade``: the curve of the cascade's threshold against accuracy and time per crop.

A cascade (``ReaderConfig.fallback``) reads every crop with a fast recogniser and re-reads with a
strong one the crops read below ``fallback_below``. Every crop of each ``--data`` folder is read
once by each model, one crop per call at batch 1 (after warm-up), recording both reads, the fast
read's confidence and both latencies. For each threshold the cascade's read of a crop is then the
fast one, or the strong one where the fast confidence is below the threshold, and its time the
fast latency plus, for those crops, the strong one: what ``Reader`` does, computed from latencies
measured once rather than re-timed per threshold (the time of deciding is nothing beside a read).
Printed and written: per threshold, the share of crops re-read, character accuracy (strict and
relaxed) and exact match, and mean / p50 / p95 ms per crop, beside the fast and strong models alone.

Usage: ``edgeocr study cascade --data ../shared/realdev/industrial --data ../shared/realdev/words
--fast default --strong accurate --threads 2 --out build/bench/cascade``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError
from edgeocr.data.labels import read_labels
from edgeocr.measure.evaluate import WARMUP_IMAGES, load_images
from edgeocr.measure.metrics import accuracy
from edgeocr.runtime.engines import engine_config
from edgeocr.runtime.reader import Reader

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0)


def _timed_reads(reader: Reader, images: list[np.ndarray]) -> tuple[list[str], list[float], list[float]]:
    """Each crop's text, confidence and latency (ms), one call per crop after warm-up."""
    for image in images[:WARMUP_IMAGES]:
        reader.read(image)
    texts, confidences, ms = [], [], []
    for image in images:
        began = time.perf_counter()
        (line,) = reader.read(image)
        ms.append((time.perf_counter() - began) * 1e3)
        texts.append(line.text)
        confidences.append(line.confidence)
    return texts, confidences, ms


def _row(name: str, labels: list[str], texts: list[str], ms: np.ndarray, reread: float) -> dict:
    scores = accuracy(labels, texts)
    return {
        "name": name,
        "reread_share": round(reread, 4),
        "char_accuracy": round(scores["char_accuracy"], 4),
        "char_accuracy_relaxed": round(scores["char_accuracy_relaxed"], 4),
        "exact_match_relaxed": round(scores["exact_match_relaxed"], 4),
        "ms_mean": round(float(ms.mean()), 3),
        "ms_p50": round(float(np.percentile(ms, 50)), 3),
        "ms_p95": round(float(np.percentile(ms, 95)), 3),
    }


def cascade_curve(data: Path, fast: str, strong: str, threads: int, thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """The curve on one labelled folder: the fast and strong models alone, then one row per threshold."""
    samples, _ = read_labels(data, strict=True)
    images = load_images(samples)
    labels = [s.text for s in samples]
    engine = engine_config("cpu", "onnxruntime", threads)
    fast_texts, fast_conf, fast_ms = _timed_reads(Reader(model=fast, detector=None, engine=engine), images)
    strong_texts, _, strong_ms = _timed_reads(Reader(model=strong, detector=None, engine=engine), images)
    fast_ms_a, strong_ms_a, conf = np.array(fast_ms), np.array(strong_ms), np.array(fast_conf)
    rows = [
        _row(fast, labels, fast_texts, fast_ms_a, 0.0),
        _row(strong, labels, strong_texts, strong_ms_a, 1.0),
    ]
    for threshold in thresholds:
        reread = conf < threshold
        texts = [s if r else f for f, s, r in zip(fast_texts, strong_texts, reread)]
        ms = fast_ms_a + np.where(reread, strong_ms_a, 0.0)
        rows.append({"threshold": threshold, **_row(f"cascade@{threshold}", labels, texts, ms, float(reread.mean()))})
    return {"data": str(data), "n": len(samples), "fast": fast, "strong": strong, "threads": threads, "rows": rows}


def format_table(result: dict) -> str:
    lines = [
        f"{result['data']} ({result['n']} crops; {result['fast']} -> {result['strong']}, {result['threads']} threads)",
        "| reader | re-read % | char % strict / relaxed | exact relaxed % | ms mean / p50 / p95 |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['name']} | {100 * row['reread_share']:.1f} | {100 * row['char_accuracy']:.1f} / "
            f"{100 * row['char_accuracy_relaxed']:.1f} | {100 * row['exact_match_relaxed']:.1f} | "
            f"{row['ms_mean']:.2f} / {row['ms_p50']:.2f} / {row['ms_p95']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True, help="labels.tsv folder (repeatable)")
    parser.add_argument("--fast", default="default", help="the recogniser that reads every crop")
    parser.add_argument("--strong", default="accurate", help="the recogniser that re-reads the unsure crops")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for both")
    parser.add_argument(
        "--thresholds", default=",".join(map(str, THRESHOLDS)), help="comma-separated thresholds in (0, 1]"
    )
    parser.add_argument("--out", type=Path, help="folder for cascade.json and cascade.md")
    args = parser.parse_args(argv)
    try:
        thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--thresholds takes numbers separated by commas, got {args.thresholds!r}")
    if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
        parser.error("every threshold must be in (0, 1]")
    try:
        results = [cascade_curve(data, args.fast, args.strong, args.threads, thresholds) for data in args.data]
    except EdgeOCRError as exc:
        print(f"error: {exc}")
        return 2
    tables = "\n\n".join(format_table(result) for result in results)
    print(tables)
    if args.out is not None:
        atomic_write_bytes(args.out / "cascade.json", (json.dumps(results, indent=1) + "\n").encode("utf-8"))
        atomic_write_bytes(args.out / "cascade.md", (tables + "\n").encode("utf-8"))
    return 0
