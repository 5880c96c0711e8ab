"""Detection quality: polygon IoU, one-to-one matching, precision / recall / hmean (numpy + OpenCV).

Defined once here for validation during training, the detection benchmark and the end-to-end
evaluation (which reuses :func:`match_polygons` to pair read lines with ground-truth lines).

Rules, close to the ICDAR 2015 protocol:

* a prediction and a ground-truth line match when their polygons' IoU is at least ``iou``;
  pairs are taken greedily, highest IoU first, each polygon used at most once;
* a match with an ``ignore``-flagged ground-truth line counts neither way, and neither does an
  unmatched prediction lying mostly (half of its area or more) inside an ignored line;
* on a non-exhaustive image (not every line is labelled) an unmatched prediction may be an
  unlabelled line, so it is not a false positive; missed labelled lines still count.

Polygons are treated as convex (their convex hull is used): detector boxes and labelled
quads are convex, and cv2.intersectConvexConvex needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

IGNORED_OVERLAP = 0.5  # share of a prediction's area inside an ignored line that excuses it


def convex_hull(poly: np.ndarray | Sequence) -> np.ndarray:
    points = np.asarray(poly, dtype=np.float32).reshape(-1, 2)
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    return cv2.convexHull(points).reshape(-1, 2)


def hull_area(hull: np.ndarray) -> float:
    return float(cv2.contourArea(hull))


def hull_intersection(a: np.ndarray, b: np.ndarray) -> float:
    area, _ = cv2.intersectConvexConvex(a, b)
    return max(0.0, float(area))


def polygon_iou(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> float:
    """Intersection over union of two convex polygons (``[K, 2]`` or flat ``[x1, y1, ...]``); 0 for empty ones."""
    ha, hb = convex_hull(a), convex_hull(b)
    area_a, area_b = hull_area(ha), hull_area(hb)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter = hull_intersection(ha, hb)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class PolygonMatches:
    """The outcome of :func:`match_polygons`: index pairs and what was left over."""

    pairs: list[tuple[int, int, float]]  # (prediction, ground truth, IoU), highest IoU first
    unmatched_predictions: list[int]
    unmatched_truths: list[int]


def iou_matrix(predictions: Sequence, truths: Sequence) -> np.ndarray:
    """IoU of every prediction (rows) with every ground-truth polygon (columns)."""
    pred_hulls = [convex_hull(p) for p in predictions]
    true_hulls = [convex_hull(t) for t in truths]
    pred_areas = [hull_area(h) for h in pred_hulls]
    true_areas = [hull_area(h) for h in true_hulls]
    matrix = np.zeros((len(pred_hulls), len(true_hulls)), dtype=np.float64)
    for i, (hp, ap) in enumerate(zip(pred_hulls, pred_areas, strict=True)):
        xp0, yp0 = hp.min(axis=0)
        xp1, yp1 = hp.max(axis=0)
        for j, (ht, at) in enumerate(zip(true_hulls, true_areas, strict=True)):
            if ap <= 0 or at <= 0:
                continue
            xt0, yt0 = ht.min(axis=0)
            xt1, yt1 = ht.max(axis=0)
            if xp1 < xt0 or xt1 < xp0 or yp1 < yt0 or yt1 < yp0:  # bounding boxes apart: no overlap
                continue
            inter = hull_intersection(hp, ht)
            union = ap + at - inter
            matrix[i, j] = inter / union if union > 0 else 0.0
    return matrix


def match_polygons(predictions: Sequence, truths: Sequence, iou: float = 0.5) -> PolygonMatches:
    """Greedy one-to-one matching: pairs with IoU >= ``iou``, highest first, each polygon used once."""
    matrix = iou_matrix(predictions, truths)
    candidates = np.argwhere(matrix >= iou) if matrix.size else np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(-matrix[candidates[:, 0], candidates[:, 1]], kind="stable") if len(candidates) else []
    used_pred: set[int] = set()
    used_true: set[int] = set()
    pairs: list[tuple[int, int, float]] = []
    for k in order:
        i, j = (int(v) for v in candidates[k])
        if i in used_pred or j in used_true:
            continue
        used_pred.add(i)
        used_true.add(j)
        pairs.append((i, j, float(matrix[i, j])))
    return PolygonMatches(
        pairs=pairs,
        unmatched_predictions=[i for i in range(len(predictions)) if i not in used_pred],
        unmatched_truths=[j for j in range(len(truths)) if j not in used_true],
    )


@dataclass
class DetectionCounts:
    """True positives, false positives and false negatives, summed over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    images: int = field(default=0)

    def __iadd__(self, other: DetectionCounts) -> DetectionCounts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.images += other.images
        return self

    @property
    def precision(self) -> float:
        """tp / (tp + fp); 1 when nothing countable was predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """tp / (tp + fn); 1 when there was nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def hmean(self) -> float:
        """Harmonic mean of precision and recall; 0 when both are 0."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "hmean": self.hmean,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "images": self.images,
        }


def count_detections(
    predictions: Sequence,
    truths: Sequence,
    ignore: Sequence[bool] | None = None,
    exhaustive: bool = True,
    iou: float = 0.5,
) -> DetectionCounts:
    """Score one image's predicted polygons against its ground-truth polygons (see the module rules)."""
    ignore = [False] * len(truths) if ignore is None else [bool(v) for v in ignore]
    if len(ignore) != len(truths):
        raise ValueError(f"got {len(ignore)} ignore flags for {len(truths)} ground-truth polygons")
    matches = match_polygons(predictions, truths, iou)
    tp = sum(1 for _, j, _ in matches.pairs if not ignore[j])
    fn = sum(1 for j in matches.unmatched_truths if not ignore[j])
    fp = 0
    if exhaustive:
        ignored = [convex_hull(truths[j]) for j in range(len(truths)) if ignore[j]]
        for i in matches.unmatched_predictions:
            hull = convex_hull(predictions[i])
            area = hull_area(hull)
            inside = max((hull_intersection(hull, h) for h in ignored), default=0.0)
            if area <= 0 or inside < IGNORED_OVERLAP * area:
                fp += 1
    return DetectionCounts(tp=tp, fp=fp, fn=fn, images=1)
