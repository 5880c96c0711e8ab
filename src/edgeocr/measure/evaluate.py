"""``edgeocr eval --mode rec``: score a recogniser on a folder of crops with ``labels.tsv``.

The JSON has ``n``, the accuracy fields of :mod:`edgeocr.measure.metrics`, per-image latency p50/p95
(batch 1, after warm-up), the same per category (first folder of each path), ``at_confidence`` (what
rejecting lines below a confidence threshold leaves, as the Reader's ``min_confidence`` does), and
every prediction, so anyone can recompute the figures.

Image files are checked before they are read (regular files only, no symlink loops, at most
:data:`~edgeocr.core.files.DEFAULT_MAX_FILE_BYTES`; :mod:`edgeocr.core.files`). By default an image
that cannot be loaded stops the evaluation (``DataError`` naming ``labels.tsv:LINE``); with
``keep_going`` (``edgeocr eval``) every image that cannot be loaded or read (any exception but
Ctrl-C) is an entry of ``errors`` (file, line, label, error type and message), left out of the
figures, and the others are scored.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeocr.core.errors import DataError, ImageError
from edgeocr.core.failures import describe_failure
from edgeocr.core.files import read_file_bytes
from edgeocr.core.images import decode_image
from edgeocr.data.labels import LabelledImage, read_labels
from edgeocr.measure.metrics import accuracy, selective_accuracy

WARMUP_IMAGES = 3

# A recogniser for evaluation: image -> (text, confidence).
ReadFn = Callable[[np.ndarray], tuple[str, float]]


def load_image_file(path: Path) -> np.ndarray:
    """An image file as uint8 BGR, checked before it is read (see the module documentation)."""
    return decode_image(read_file_bytes(path), str(path))


def load_images(samples: list[LabelledImage]) -> list[np.ndarray]:
    images = []
    for s in samples:
        try:
            images.append(load_image_file(s.path))
        except ImageError as exc:
            raise DataError(f"{s.path.parent / 'labels.tsv'}:{s.line}: {exc}") from exc
    return images


def _error_entry(sample: LabelledImage, exc: Exception) -> dict:
    return {"file": sample.file, "line": sample.line, "label": sample.text, "error": describe_failure(exc)}


def summarise(labels: list[str], predictions: list[str], latencies_ms: list[float]) -> dict:
    scores = accuracy(labels, predictions)
    return {
        "n": len(labels),
        **{k: round(v, 6) for k, v in scores.items()},
        "latency_ms_p50": round(float(np.percentile(latencies_ms, 50)), 3) if latencies_ms else None,
        "latency_ms_p95": round(float(np.percentile(latencies_ms, 95)), 3) if latencies_ms else None,
    }


def evaluate_rec(
    read: ReadFn, data_dir: Path, progress: Callable[[], None] | None = None, keep_going: bool = False
) -> dict:
    """Read every crop of ``data_dir`` one at a time and score the reads; ``keep_going``: see the module
    documentation (an image file named in ``labels.tsv`` that is missing is then one of the errors too)."""
    samples, _ = read_labels(data_dir, strict=True, check_files=not keep_going)
    return evaluate_samples(read, samples, progress, keep_going=keep_going)


def evaluate_samples(
    read: ReadFn,
    samples: list[LabelledImage],
    progress: Callable[[], None] | None = None,
    keep_going: bool = False,
) -> dict:
    """Read the crops of ``samples`` one at a time and score the reads, overall and per category.

    ``keep_going``: an image that cannot be loaded or read is an entry of ``errors`` and is left out of
    the figures (DataError when none is left); else the first image that cannot be loaded stops it."""
    errors: list[dict] = []
    if keep_going:
        loaded: list[tuple[LabelledImage, np.ndarray]] = []
        for sample in samples:
            try:
                loaded.append((sample, load_image_file(sample.path)))
            except Exception as exc:  # Ctrl-C is not an Exception: it still stops the run
                errors.append(_error_entry(sample, exc))
        for _, image in loaded[:WARMUP_IMAGES]:
            try:
                read(image)
            except Exception:  # the timed read below records it
                pass
    else:
        loaded = list(zip(samples, load_images(samples)))
        for _, image in loaded[:WARMUP_IMAGES]:
            read(image)
    scored: list[LabelledImage] = []
    predictions, latencies = [], []
    for sample, image in loaded:
        start = time.perf_counter()
        if keep_going:
            try:
                text, confidence = read(image)
            except Exception as exc:
                errors.append(_error_entry(sample, exc))
                continue
        else:
            text, confidence = read(image)
        latencies.append((time.perf_counter() - start) * 1000)
        scored.append(sample)
        predictions.append(
            {"file": sample.file, "label": sample.text, "prediction": text, "confidence": round(float(confidence), 6)}
        )
        if progress:
            progress()
    if keep_going and not scored:
        shown = "; ".join(f"line {e['line']}: {e['error']}" for e in errors[:3])
        raise DataError(f"none of the {len(samples)} labelled images could be read ({shown})")
    samples = scored
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
    if keep_going:
        result["errors"] = sorted(errors, key=lambda e: e["line"])
    return result
