"""What a :class:`~edgeocr.runtime.reader.Reader` returns: one :class:`ImageResult` per image, made of
:class:`LineRead` objects, each line's text, confidences, polygon and format kept together.

Why this shape (compared with RapidOCR's ``RapidOCROutput`` and PaddleOCR's ``OCRResult``): RapidOCR
returns parallel arrays (``boxes``, ``txts``, ``scores``) and PaddleOCR a dict of parallel lists
(``rec_texts``, ``rec_scores``, ``rec_polys``); filtering or sorting them means keeping several
arrays in step. Here each line is one frozen object, and the image result is a sequence of them
(``for line in result``, ``len(result)``, ``result[0]``), so the common code is a list
comprehension. Industrial reading needs more per line than a text and a score: per-character
confidences, the matched format and whether the read is ``valid`` (confident and in format), the
free read beside the constrained one, the ROI's name. Like both peers, a result prints, serialises
(``to_dict``/``to_json``, the same layout as ``edgeocr read --json``) and draws itself; unlike them
it does not keep the image's pixels (a batch of results would hold every frame in memory), so
:meth:`ImageResult.draw` takes the image, or re-reads it when the result came from a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgeocr.core.images import ImageSource, load_image
from edgeocr.core.lineimage import to_gray

Point = tuple[float, float]


@dataclass(frozen=True)
class LineRead:
    """One text line read from an image.

    ``text``: the reading (under the matched format when formats are in play); ``raw_text``: the
    free reading without format constraints. ``confidence`` is the weakest character's.
    ``poly``: the line's corners (x, y) in the input image (after EXIF orientation), reading
    order top-left, top-right, bottom-right, bottom-left. ``format``: the matched format's name.
    ``valid``: the text is non-empty, its confidence reaches the minimum and, when formats are in
    play, it matches one. ``region``: the ROI's name ('roi' mode). ``detection_score``: the
    detector's score ('detector' mode), else None. ``model``: the recogniser that gave this read
    (``ReaderConfig.model``, or ``ReaderConfig.fallback`` when the line was re-read). ``crop``: the
    upright line crop after preprocessing (what the recogniser saw) when ``ReadOptions.return_crops``
    was set (not part of equality).
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    poly: tuple[Point, Point, Point, Point]
    format: str | None
    valid: bool
    raw_text: str
    region: str | None = None
    detection_score: float | None = None
    model: str | None = None
    crop: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of everything but the crop."""
        return {
            "text": self.text,
            "confidence": self.confidence,
            "char_confidences": list(self.char_confidences),
            "poly": [list(p) for p in self.poly],
            "format": self.format,
            "valid": self.valid,
            "raw_text": self.raw_text,
            "region": self.region,
            "detection_score": self.detection_score,
            "model": self.model,
        }


@dataclass(frozen=True, eq=False)
class ImageResult:
    """The lines read from one image, in reading order, with the image's size and the time spent.

    A sequence of :class:`LineRead` (iterate, index, ``len``). Two results are equal when their
    lines and image sizes are; a result also equals a list of the same lines. ``timings_ms``:
    ``load`` (decode), ``locate`` (detector or regions), ``recognize`` (this image's share of the
    batch's recognition time, split by line count) and ``total``; ``source``: the path, or a short
    description of the data the image came from. ``mode``: how this image's lines were found,
    'whole' (the image is one line), 'detector' or 'roi' (regions); in the reader's 'auto' mode it
    says which of 'whole' and 'detector' was done for this image. None when not recorded.
    """

    lines: tuple[LineRead, ...]
    image_size: tuple[int, int]  # (width, height), after EXIF orientation
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = ""
    _path: str | None = field(default=None, repr=False)
    mode: str | None = None

    # -- a sequence of lines --

    def __iter__(self) -> Iterator[LineRead]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, like a tuple
        return self.lines[index]

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ImageResult):
            return self.lines == other.lines and self.image_size == other.image_size
        if isinstance(other, (list, tuple)):
            return list(self.lines) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable timings dict; equality is by value

    # -- views --

    @property
    def texts(self) -> list[str]:
        """The text of every line, in order."""
        return [line.text for line in self.lines]

    @property
    def valid_lines(self) -> list[LineRead]:
        """The lines whose read is confident (and in format, when formats are in play)."""
        return [line for line in self.lines if line.valid]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``source``, ``image_size`` {width, height}, ``mode``, ``lines`` and ``timings_ms``."""
        width, height = self.image_size
        return {
            "source": self.source,
            "image_size": {"width": width, "height": height},
            "mode": self.mode,
            "lines": [line.to_dict() for line in self.lines],
            "timings_ms": {name: round(value, 3) for name, value in self.timings_ms.items()},
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string (UTF-8 text kept as is)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def draw(self, image: ImageSource | None = None) -> np.ndarray:
        """A BGR copy of the image with each line's polygon and read (red: not valid).

        ``image``: the image that was read; may be left out when the result was read from a file.
        """
        if image is None:
            if self._path is None:
                raise ValueError(f"this result was read from {self.source}, not a file: pass the image to draw()")
            image = self._path
        pixels = load_image(image, max_pixels=None)
        if (pixels.shape[1], pixels.shape[0]) != self.image_size:
            raise ValueError(
                f"the image is {pixels.shape[1]}x{pixels.shape[0]}, the result is for a "
                f"{self.image_size[0]}x{self.image_size[1]} image"
            )
        return draw_reads(pixels, self.lines)

    def __str__(self) -> str:
        width, height = self.image_size
        total = self.timings_ms.get("total")
        head = f"{len(self.lines)} line(s) in {self.source or 'image'} ({width}x{height}"
        head += f", {total:.1f} ms)" if total is not None else ")"
        rows = [
            f"  {line.text or '(raw: ' + line.raw_text + ')'}  {line.confidence:.2f}"
            f"{'  ' + line.format if line.format else ''}{'' if line.valid else '  REJECTED'}"
            for line in self.lines
        ]
        return "\n".join([head, *rows])


def path_of(source: object) -> str | None:
    """The file path of an image source, when it is one."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else None


VALID_COLOUR = (40, 180, 40)  # BGR green: a read that fits and is confident
REJECT_COLOUR = (30, 30, 220)  # red: no valid read here


def draw_reads(image: np.ndarray, reads: Sequence[LineRead]) -> np.ndarray:
    """A BGR copy of ``image`` with each line's polygon and its text (or the raw text, struck as rejected)."""
    canvas = (
        cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] != 3 else image.copy()
    )
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
        cv2.putText(
            canvas, label, (x + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return canvas
