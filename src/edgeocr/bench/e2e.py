"""``edgeocr eval --mode e2e``: score a whole-image reader (detection + recognition) on annotated images.

The data folder holds ``annotations.jsonl`` (see :mod:`edgeocr.data.scene_annotations`): per
image, each line's ``poly``, ``text`` and ``ignore``, and ``exhaustive`` (false: only some lines
are labelled). Everything is checked before any image is read by the engine: bad JSON, a bad
polygon, a labelled line without text, a missing or undecodable image, or an image whose size
differs from the annotation's raise :class:`DataError` naming ``annotations.jsonl:LINE``.

Scoring, per image (the rules of :mod:`edgeocr.measure.detection_metrics`, at IoU 0.5):

* reads are matched one-to-one to the labelled lines, highest IoU first;
* a read matched to an ``ignore`` line, or lying mostly inside one, counts neither way;
* an unmatched read is a false positive only when the image is exhaustive (on the others it may
  be an unlabelled line);
* every labelled (not ignored) line is scored for reading against its matched read's text, and
  a missed line counts as read empty (``""``), so reading accuracy also pays for missed lines;
* **vertical lines** (``"vertical": true``: characters stacked one under the other, as on
  container doors) are often found as several pieces, one per character or group. When no
  single read matches such a line, the unmatched reads lying mostly inside it are joined into
  one read (their texts top to bottom, without separators; their polygons' hull), which counts
  as that line's read when its hull matches the line at IoU 0.5. Horizontal lines get no such
  allowance. ``per_orientation`` reports horizontal and vertical lines apart.

The result has the same shape as ``edgeocr eval --mode rec`` (``n`` = labelled lines scored, the
accuracy fields of :mod:`edgeocr.measure.metrics`, latency p50/p95, now per image, ``per_category``
keyed by the annotation's ``category`` or else the first folder of the file, and ``predictions``,
one per labelled line) plus the detection figures ``precision``, ``recall``, ``hmean``, ``tp``,
``fp``, ``fn``, ``images``, and ``per_image`` with every read and its polygon.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeocr.core.errors import DataError, ImageError
from edgeocr.data.labels import category_of
from edgeocr.data.scene_annotations import read_scene_annotations
from edgeocr.measure.detection_metrics import (
    IGNORED_OVERLAP,
    DetectionCounts,
    convex_hull,
    count_detections,
    hull_area,
    hull_intersection,
    match_polygons,
    polygon_iou,
)
from edgeocr.measure.evaluate import WARMUP_IMAGES, load_image_file, summarise
from edgeocr.measure.metrics import accuracy

IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class TruthLine:
    """One annotated line of an image."""

    text: str  # "" for ignored lines without text
    poly: np.ndarray  # float32 [K, 2]
    ignore: bool
    vertical: bool


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of ``annotations.jsonl`` with its lines."""

    path: Path
    file: str  # as written in the annotation
    line: int  # 1-based line in annotations.jsonl
    annotations: Path
    category: str
    exhaustive: bool
    width: int | None
    height: int | None
    lines: tuple[TruthLine, ...]

    @property
    def source(self) -> str:
        return f"{self.annotations}:{self.line}"


@dataclass(frozen=True, eq=False)
class SceneRead:
    """One line an engine read in a whole image: its text, polygon (float ``[K, 2]``, image pixels), confidence."""

    text: str
    poly: np.ndarray
    confidence: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "poly", np.asarray(self.poly, dtype=np.float64).reshape(-1, 2))
        object.__setattr__(self, "confidence", float(self.confidence))

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "poly": [[round(float(x), 1), round(float(y), 1)] for x, y in self.poly],
            "confidence": round(self.confidence, 6),
        }


# A whole-image reader for evaluation: BGR image -> the lines it read.
SceneReadFn = Callable[[np.ndarray], Sequence[SceneRead]]


# --- data ----------------------------------------------------------------------------------------


def read_annotated_images(root: Path | str) -> list[AnnotatedImage]:
    """Every image of ``root/annotations.jsonl`` (or that file), strictly: DataError names ``file:line``."""
    path, records, _ = read_scene_annotations(root, strict=True)
    images = []
    for record in records:
        lines = []
        for k, (poly, ignore, text, vertical) in enumerate(
            zip(record.polys, record.ignore, record.texts, record.vertical, strict=True)
        ):
            if not ignore and not text:
                raise DataError(
                    f"{path}:{record.line}: lines[{k}] has no 'text' (a line that is not to be read "
                    'needs "ignore": true)'
                )
            if hull_area(convex_hull(poly)) <= 0:
                raise DataError(f"{path}:{record.line}: lines[{k}]: poly encloses no area")
            lines.append(TruthLine(text=text or "", poly=poly, ignore=ignore, vertical=vertical))
        images.append(
            AnnotatedImage(
                path=record.path,
                file=record.file,
                line=record.line,
                annotations=path,
                category=record.category or category_of(record.file),
                exhaustive=record.exhaustive,
                width=record.width,
                height=record.height,
                lines=tuple(lines),
            )
        )
    return images


def load_scene_images(images: Sequence[AnnotatedImage]) -> list[np.ndarray]:
    """Decode every image (uint8 BGR); DataError ``annotations.jsonl:LINE`` for one that fails or has another size."""
    arrays = []
    for item in images:
        try:
            array = load_image_file(item.path)  # checked before it is read (core.files)
        except ImageError as exc:
            raise DataError(f"{item.source}: {exc}") from exc
        height, width = array.shape[:2]
        if (item.width, item.height) not in ((None, None), (width, height)):
            raise DataError(
                f"{item.source}: {item.file} is {width}x{height} but the annotation says {item.width}x{item.height}"
            )
        arrays.append(array)
    return arrays


# --- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageScore:
    """One image scored: detection counts, and each labelled line's read."""

    counts: DetectionCounts
    reads: list[SceneRead]  # after joining the pieces of vertical lines
    labelled: list[int]  # indices of the image's lines that are scored (not ignored)
    matched: list[int | None]  # per labelled line: index into reads, None when missed
    ious: list[float | None]


def _share_inside(poly: np.ndarray, region: np.ndarray) -> float:
    """Share of ``poly``'s area that lies inside ``region`` (both treated as convex)."""
    hull = convex_hull(poly)
    area = hull_area(hull)
    return hull_intersection(hull, convex_hull(region)) / area if area > 0 else 0.0


def join_vertical_pieces(
    truths: Sequence[TruthLine], reads: Sequence[SceneRead], iou: float = IOU_THRESHOLD
) -> list[SceneRead]:
    """``reads`` with the pieces of each vertical line joined into one read (see the module rules).

    For each vertical, not ignored line that no single read matches at ``iou``: the reads lying
    mostly inside it (at least IGNORED_OVERLAP of their area), when there are two or more and
    their hull matches the line at ``iou``, become one read: texts top to bottom, confidence the
    lowest. Reads not joined are kept as they are, in their order, joined ones come last."""
    reads = list(reads)
    used: set[int] = set()
    joined: list[SceneRead] = []
    for truth in truths:
        if not truth.vertical or truth.ignore or not reads:
            continue
        if any(polygon_iou(r.poly, truth.poly) >= iou for i, r in enumerate(reads) if i not in used):
            continue
        pieces = [
            i for i, r in enumerate(reads) if i not in used and _share_inside(r.poly, truth.poly) >= IGNORED_OVERLAP
        ]
        if len(pieces) < 2:
            continue
        hull = convex_hull(np.concatenate([reads[i].poly for i in pieces]))
        if polygon_iou(hull, truth.poly) < iou:
            continue
        pieces.sort(key=lambda i: float(reads[i].poly[:, 1].mean()))
        joined.append(
            SceneRead(
                text="".join(reads[i].text for i in pieces),
                poly=hull,
                confidence=min(reads[i].confidence for i in pieces),
            )
        )
        used.update(pieces)
    return [r for i, r in enumerate(reads) if i not in used] + joined


def score_image(image: AnnotatedImage, reads: Sequence[SceneRead], iou: float = IOU_THRESHOLD) -> ImageScore:
    """Match one image's reads to its lines and count (see the module rules)."""
    reads = join_vertical_pieces(image.lines, reads, iou)
    predicted = [r.poly for r in reads]
    truths = [t.poly for t in image.lines]
    ignore = [t.ignore for t in image.lines]
    counts = count_detections(predicted, truths, ignore, image.exhaustive, iou)
    pairs = {j: (i, value) for i, j, value in match_polygons(predicted, truths, iou).pairs}
    labelled = [j for j, t in enumerate(image.lines) if not t.ignore]
    return ImageScore(
        counts=counts,
        reads=reads,
        labelled=labelled,
        matched=[pairs[j][0] if j in pairs else None for j in labelled],
        ious=[round(pairs[j][1], 4) if j in pairs else None for j in labelled],
    )


def _detection(counts: DetectionCounts) -> dict:
    figures = counts.as_dict()
    return {
        **{k: round(float(figures[k]), 6) for k in ("precision", "recall", "hmean")},
        **{k: int(figures[k]) for k in ("tp", "fp", "fn", "images")},
    }


def evaluate_scenes(
    read: SceneReadFn,
    images: Sequence[AnnotatedImage],
    arrays: Sequence[np.ndarray] | None = None,
    progress: Callable[[], None] | None = None,
    iou: float = IOU_THRESHOLD,
    errors: list[tuple[AnnotatedImage, Exception]] | None = None,
) -> dict:
    """Read every image one at a time (after WARMUP_IMAGES untimed reads) and score the reads.

    ``arrays``: the decoded images when the caller has loaded them already (to check them
    before any engine is built), else they are loaded here. ``errors``: when given, an image whose
    read raises (any exception; Ctrl-C is not one) is appended to it with the exception and left
    out of the figures, and the others are scored; else the exception stops the evaluation."""
    arrays = load_scene_images(images) if arrays is None else list(arrays)
    for array in arrays[:WARMUP_IMAGES]:
        try:
            read(array)
        except Exception:
            if errors is None:
                raise  # else the timed read below records it
    scores: list[ImageScore] = []
    latencies: list[float] = []
    read_images: list[AnnotatedImage] = []
    for item, array in zip(images, arrays, strict=True):
        start = time.perf_counter()
        try:
            reads = list(read(array))
        except Exception as exc:
            if errors is None:
                raise
            errors.append((item, exc))
            continue
        latencies.append((time.perf_counter() - start) * 1000)
        scores.append(score_image(item, reads, iou))
        read_images.append(item)
        if progress:
            progress()
    if not read_images:
        return {}  # every read failed (only with ``errors``): nothing to score
    images = read_images

    rows_per_image: list[list[dict]] = []  # one row per labelled line
    per_image = []
    for item, score, latency in zip(images, scores, latencies, strict=True):
        rows, line_of_read = [], {}
        for j, i, overlap in zip(score.labelled, score.matched, score.ious, strict=True):
            line = item.lines[j]
            found = score.reads[i] if i is not None else None
            rows.append(
                {
                    "file": item.file,
                    "label": line.text,
                    "prediction": found.text if found else "",
                    "confidence": round(found.confidence, 6) if found else 0.0,
                    "iou": overlap,
                    "vertical": line.vertical,
                    "category": item.category,
                }
            )
            if i is not None:
                line_of_read[i] = j
        rows_per_image.append(rows)
        per_image.append(
            {
                "file": item.file,
                "category": item.category,
                "exhaustive": item.exhaustive,
                "latency_ms": round(latency, 3),
                **_detection(score.counts),
                "reads": [{**r.to_dict(), "line": line_of_read.get(i)} for i, r in enumerate(score.reads)],
            }
        )

    def group(indices: list[int]) -> dict:
        counts = DetectionCounts()
        for k in indices:
            counts += scores[k].counts
        rows = [row for k in indices for row in rows_per_image[k]]
        return {
            **summarise([r["label"] for r in rows], [r["prediction"] for r in rows], [latencies[k] for k in indices]),
            **_detection(counts),
        }

    by_category: dict[str, list[int]] = defaultdict(list)
    for k, item in enumerate(images):
        by_category[item.category].append(k)
    result = group(list(range(len(images))))
    result["per_category"] = {category: group(indices) for category, indices in sorted(by_category.items())}
    predictions = [row for rows in rows_per_image for row in rows]
    result["per_orientation"] = {}
    for name, vertical in (("horizontal", False), ("vertical", True)):
        rows = [r for r in predictions if r["vertical"] is vertical]
        if rows:  # recall only: a read that matches nothing has no orientation to count against
            scores_of = accuracy([r["label"] for r in rows], [r["prediction"] for r in rows])
            result["per_orientation"][name] = {
                "n": len(rows),
                **{k: round(v, 6) for k, v in scores_of.items()},
                "recall": round(sum(r["iou"] is not None for r in rows) / len(rows), 6),
            }
    result["predictions"] = predictions
    result["per_image"] = per_image
    return result
