"""Recognition accuracy, defined once for our models and the peers alike.

* character accuracy = max(0, 1 - total edit distance / total ground-truth characters)
* exact match = share of lines read exactly
* relaxed variants compare after upper-casing and keeping only A-Z and 0-9 (plates, containers)
* selective accuracy = the same on the lines a confidence threshold accepts, with the share accepted
  and the wrong lines that got through (what the Reader's ``min_confidence`` buys)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rapidfuzz.distance import Levenshtein

_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


def relaxed(text: str) -> str:
    """Upper-case and drop everything that is not a letter or a digit."""
    return _NOT_ALNUM.sub("", text.upper())


def accuracy(labels: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Strict and relaxed character accuracy and exact match, as fractions in [0, 1]."""
    if len(labels) != len(predictions):
        raise ValueError("labels and predictions differ in length")
    return {
        **_scores(labels, predictions, ""),
        **_scores([relaxed(t) for t in labels], [relaxed(p) for p in predictions], "_relaxed"),
    }


READER_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def selective_accuracy(
    labels: Sequence[str],
    predictions: Sequence[str],
    confidences: Sequence[float],
    thresholds: Sequence[float] = READER_THRESHOLDS,
) -> list[dict[str, float]]:
    """Per threshold: share of lines accepted (confidence >= threshold), strict character accuracy
    and exact match of the accepted lines (0 when none is), and wrong lines accepted."""
    if not len(labels) == len(predictions) == len(confidences):
        raise ValueError("labels, predictions and confidences differ in length")
    rows = []
    for threshold in thresholds:
        kept = [i for i, c in enumerate(confidences) if c >= threshold]
        scores = _scores([labels[i] for i in kept], [predictions[i] for i in kept], "")
        rows.append(
            {
                "min_confidence": threshold,
                "accepted": len(kept) / len(labels) if len(labels) else 0.0,
                **scores,
                "wrong_accepted": sum(labels[i] != predictions[i] for i in kept),
            }
        )
    return rows


def character_accuracy(edit_distance: int, truth_chars: int) -> float:
    """max(0, 1 - edit distance / ground-truth characters); 0 when there is nothing to read.

    Taken from totals, so that training can sum them across processes before dividing."""
    return max(0.0, 1.0 - edit_distance / truth_chars) if truth_chars else 0.0


def _scores(labels: Iterable[str], predictions: Iterable[str], suffix: str) -> dict[str, float]:
    distance = chars = exact = n = 0
    for label, prediction in zip(labels, predictions):
        distance += Levenshtein.distance(label, prediction)
        chars += len(label)
        exact += label == prediction
        n += 1
    return {
        f"char_accuracy{suffix}": character_accuracy(distance, chars),
        f"exact_match{suffix}": exact / n if n else 0.0,
    }
