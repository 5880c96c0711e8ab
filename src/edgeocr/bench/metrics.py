"""Recognition accuracy, defined once for our models and the peers alike.

* character accuracy = max(0, 1 - total edit distance / total ground-truth characters)
* exact match = share of lines read exactly
* relaxed variants compare after upper-casing and keeping only A-Z and 0-9 (plates, containers)
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
