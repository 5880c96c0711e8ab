"""What a :class:`~edgeocr.runtime.reader.Reader` needs from a line detector and a format matcher.

These types sit below the reader and below every detector (ours, PP-OCR's adapter, a caller's),
so detectors never import the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edgeocr.core.charset import Charset


@dataclass(frozen=True, eq=False)
class DetectedLine:
    """One text line found by a detector.

    ``poly``: float32 ``[4, 2]`` corners (x, y) in image pixels, in reading order: top-left,
    top-right, bottom-right, bottom-left of the text (so a line printed upside down has its
    "top-left" at the bottom right of the box). ``score``: the detector's confidence in [0, 1].
    ``angle``: degrees of the top edge against the x axis (positive: turned clockwise on screen).
    """

    poly: np.ndarray
    score: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        poly = np.asarray(self.poly, dtype=np.float32)
        if poly.shape != (4, 2) or not np.isfinite(poly).all():
            raise ValueError(f"a detected line needs 4 finite (x, y) corners, got shape {poly.shape}")
        object.__setattr__(self, "poly", poly)
        object.__setattr__(self, "score", float(self.score))


@runtime_checkable
class LineDetector(Protocol):
    """Finds text lines in an image. ``detect`` must be safe to call from several threads."""

    def detect(self, image: np.ndarray) -> Sequence[DetectedLine]:
        """Lines of a uint8 BGR ``[H, W, 3]`` or gray ``[H, W]`` image, in reading order."""
        ...


@dataclass(frozen=True)
class FormatMatch:
    """A line read under a format's constraints.

    ``text``/``confidence``/``char_confidences`` as in :class:`~edgeocr.core.ctc.DecodedLine`;
    ``format_name``: the format that matched, None when none did; ``valid``: the text matches
    that format and passes its checks (check digits, date ranges...).
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    format_name: str | None
    valid: bool


@runtime_checkable
class FormatMatcher(Protocol):
    """Decodes a line's per-frame probabilities under a set of formats. Must be thread-safe."""

    def match(self, probs: np.ndarray, charset: Charset, allowed: Sequence[str]) -> FormatMatch:
        """Best reading of ``probs`` (float64 ``[T, C]``, softmax) among the ``allowed`` format names."""
        ...
