"""Drawing reads onto an image for ``edgeocr read --draw`` (OpenCV only)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgeocr.core.lineimage import to_gray
from edgeocr.runtime.reader import LineRead

VALID_COLOUR = (40, 180, 40)  # BGR green: a read that fits and is confident
REJECT_COLOUR = (30, 30, 220)  # red: no valid read here


def draw_reads(image: np.ndarray, reads: Sequence[LineRead]) -> np.ndarray:
    """A BGR copy of ``image`` with each line's polygon and its text (or the raw text, struck as rejected)."""
    canvas = cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] != 3 else image.copy()
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    for read in reads:
        colour = VALID_COLOUR if read.valid else REJECT_COLOUR
        points = np.round(np.asarray(read.poly, np.float32)).astype(np.int32)
        cv2.polylines(canvas, [points], isClosed=True, color=colour, thickness=max(1, round(2 * scale)))
        label = f"{read.text or 'x ' + read.raw_text} {read.confidence:.2f}"
        x, y = int(points[:, 0].min()), int(points[:, 1].min())
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y - h - base - 2)
        cv2.rectangle(canvas, (x, top), (x + w + 2, top + h + base + 2), colour, thickness=-1)
        cv2.putText(canvas, label, (x + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas
