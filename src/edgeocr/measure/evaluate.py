"""``edgeocr eval --mode rec``: score a recogniser on a folder of crops with ``labels.tsv``.

The JSON has ``n``, the accuracy fields of :mod:`edgeocr.measure.metrics`, per-image latency p50/p95
(batch 1, after warm-up), the same per category (first folder of each path), ``at_confidence`` (what
rejecting lines below a confidence threshold leaves, as the Reader's ``min_confidence`` does), and
every prediction, so anyone can recompute the figures.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeocr.core.errors import DataError, ImageError
from edgeocr.core.images import read_image
from edgeocr.data.labels import LabelledImage, read_labels
from edgeocr.measure.metrics import accuracy, selective_accuracy

WARMUP_IMAGES = 3

# A recogniser for evaluation: image -> (text, confidence).
ReadFn = Callable[[np.ndarray], tuple[str, float]]


def load_images(samples: list[LabelledImage]) -> list[np.ndarray]:
    images = []
    for s in samples:
        try:
            images.append(read_image(s.path))
        except ImageError as exc:
            raise DataError(f"{s.path.parent / 'labels.tsv'}:{s.line}: {exc}") from exc
    return images


def summarise(labels: list[str], predictions: list[str], latencies_ms: list[float]) -> dict:
    scores = accuracy(labels, predictions)
    return {
        "n": len(labels),
        **{k: round(v, 6) for k, v in scores.items()},
        "latency_ms_p50": round(float(np.percentile(latencies_ms, 50)), 3) if latencies_ms else None,
        "latency_ms_p95": round(float(np.percentile(latencies_ms, 95)), 3) if latencies_ms else None,
    }


def evaluate_rec(read: ReadFn, data_dir: Path, progress: Callable[[], None] | None = None) -> dict:
    """Read every crop of ``data_dir`` one at a time and score the reads."""
    samples, _ = read_labels(data_dir, strict=True)
    return evaluate_samples(read, samples, progress)


def evaluate_samples(read: ReadFn, samples: list[LabelledImage], progress: Callable[[], None] | None = None) -> dict:
    """Read the crops of ``samples`` one at a time and score the reads, overall and per category."""
    images = load_images(samples)
    for image in images[:WARMUP_IMAGES]:
        read(image)
    predictions, latencies = [], []
    for sample, image in zip(samples, images):
        start = time.perf_counter()
        text, confidence = read(image)
        latencies.append((time.perf_counter() - start) * 1000)
        predictions.append(
            {"file": sample.file, "label": sample.text, "prediction": text, "confidence": round(float(confidence), 6)}
        )
        if progress:
            progress()
    groups: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[sample.category].append(i)
    result = summarise([s.text for s in samples], [p["prediction"] for p in predictions], latencies)
    result["per_category"] = {
        category: summarise(
            [samples[i].text for i in idx], [predictions[i]["prediction"] for i in idx], [latencies[i] for i in idx]
        )
        for category, idx in sorted(groups.items())
    }
    result["at_confidence"] = [
        {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
        for row in selective_accuracy(
            [s.text for s in samples], [p["prediction"] for p in predictions], [p["confidence"] for p in predictions]
        )
    ]
    result["predictions"] = predictions
    return result
