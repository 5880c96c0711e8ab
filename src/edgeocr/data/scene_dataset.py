"""Torch datasets of whole scenes with line polygons, and the DB training targets made from them.

Sources (each returns, per index, a :class:`SceneItem` or a :class:`SkippedSample` with the reason):

* :class:`SyntheticScenes`: scenes of :class:`edgeocr.synth.scenes.SceneSynthesizer` rendered on
  the fly, new ones each epoch; index ``i`` of epoch ``e`` is sample ``e * n + i`` of the seed.
* :class:`SceneFolder`: a folder with ``annotations.jsonl`` (read by
  :mod:`edgeocr.data.scene_annotations`), as written by ``edgeocr synth scenes``.
* :class:`InMemorySamples`: a fixed set, e.g. the held-out synthetic validation scenes.

:class:`DetectionSamples` turns scenes into network inputs and targets. Training draws a random
scale (and now and then a quarter turn) and a square crop that avoids cutting lines in half;
evaluation prepares images exactly as the runtime does (:func:`edgeocr.core.detection.prepare_image`)
and pads them to a square. Targets follow DB (Liao et al. 2020), computed on a small window around each line from the
exact distance of each pixel centre to the line's border (numpy) and OpenCV polygon filling
for inside/outside (no polygon-clipping library):

* ``prob``: 1 inside each line shrunk by D = A (1 - r^2) / L, else 0;
* ``prob_mask``: 0 over ignored lines and lines too small to keep a core, else 1; on
  non-exhaustive images only the labelled lines' surroundings count (unlabelled text is not
  background there);
* ``thresh``: 1 - d / D within distance D of a line's border (d the distance to it), scaled
  to [THRESH_MIN, THRESH_MAX]; ``thresh_mask``: the lines grown by D.

Only training imports this module (it needs torch); the runtime never does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgeocr.core.detection import normalise, prepare_image
from edgeocr.core.detector_config import DetectorConfig
from edgeocr.core.errors import DataError
from edgeocr.data.datasets import InMemorySamples, ListedImages, OnTheFlySynthetic, SkippedSample
from edgeocr.data.scene_annotations import read_scene_annotations

THRESH_MIN = 0.3  # threshold-map value far from any border (DB's choice)
THRESH_MAX = 0.7  # ... and on a border
MIN_LINE_SIDE = 3.0  # lines thinner than this (pixels, at network scale) are ignored, not learned
SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision: 1/16 pixel


@dataclass(frozen=True)
class SceneItem:
    """One usable scene: a uint8 BGR image and its line polygons (``[K, 2]`` float32 each)."""

    image: np.ndarray
    polys: list[np.ndarray]
    ignore: list[bool]
    exhaustive: bool  # every text line in the image is labelled
    source: str  # where it came from, for messages


SceneSample = SceneItem | SkippedSample


class SceneFolder(ListedImages):
    """Scenes listed in ``annotations.jsonl``; unusable lines are skipped and listed in ``skipped``."""

    def __init__(self, root: Path | str) -> None:
        annotations, records, skipped = read_scene_annotations(root)
        super().__init__(annotations, records, skipped)

    def item(self, entry: Any, image: np.ndarray, source: str) -> SceneSample:
        height, width = image.shape[:2]
        if (entry.width, entry.height) not in ((None, None), (width, height)):
            return SkippedSample(
                f"{source}: the image is {width}x{height} but the annotation says {entry.width}x{entry.height}"
            )
        return SceneItem(
            image=image, polys=entry.polys, ignore=entry.ignore, exhaustive=entry.exhaustive, source=source
        )


class SyntheticScenes(OnTheFlySynthetic):
    """Synthetic scenes (:class:`~edgeocr.synth.scenes.SceneSynthesizer`) rendered on the fly; see
    :class:`~edgeocr.data.datasets.OnTheFlySynthetic`."""

    def __init__(
        self, n_per_epoch: int, seed: int, template_files: Sequence[str] = (), font_dirs: Sequence[str] = ()
    ) -> None:
        super().__init__(n_per_epoch, seed, None, template_files, font_dirs)

    def synthesizer_type(self) -> type:
        from edgeocr.synth.scenes import SceneSynthesizer

        return SceneSynthesizer

    def __getitem__(self, index: int) -> SceneSample:
        sample, source = self._render(index, "synthetic scene")
        if isinstance(sample, SkippedSample):
            return sample
        polys = [np.asarray(line.poly, dtype=np.float32).reshape(-1, 2) for line in sample.lines]
        return SceneItem(image=sample.image, polys=polys, ignore=[False] * len(polys), exhaustive=True, source=source)


def render_synthetic_scenes(
    count: int, seed: int, template_files: Sequence[str] = (), font_dirs: Sequence[str] = ()
) -> InMemorySamples:
    """``count`` synthetic scenes of ``seed`` rendered now and kept in memory (a fixed set)."""
    synthetic = SyntheticScenes(count, seed, template_files, font_dirs)
    return InMemorySamples([synthetic[i] for i in range(count)])


def open_scene_dataset(path: Path | str) -> SceneFolder:
    """A scene folder (or its ``annotations.jsonl``); DataError names what is missing."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such scene dataset")
    return SceneFolder(path)


# --- DB targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DBTargets:
    """The four float32 ``[H, W]`` maps of the DB loss."""

    prob: np.ndarray
    prob_mask: np.ndarray
    thresh: np.ndarray
    thresh_mask: np.ndarray


def shrink_distance(poly: np.ndarray, shrink_ratio: float) -> float:
    """DB's shrink offset D = A (1 - r^2) / L of a polygon (0 for a degenerate one)."""
    area = abs(float(cv2.contourArea(poly.astype(np.float32))))
    perimeter = float(cv2.arcLength(poly.astype(np.float32), closed=True))
    return area * (1.0 - shrink_ratio**2) / perimeter if perimeter > 0 else 0.0


def _signed_border_distance(poly: np.ndarray, pad: int) -> tuple[int, int, np.ndarray]:
    """(x0, y0, field) over a window around ``poly``: distance of each pixel centre to the
    polygon's border, positive inside, negative outside.

    The distance is exact (to the nearest edge segment, in numpy): a pixel-grid distance
    transform is off by up to half a pixel, a tenth of the height of a 10 px line. Which side a
    pixel lies on comes from cv2.fillPoly at 1/16 pixel precision.
    """
    x0 = int(math.floor(float(poly[:, 0].min()))) - pad
    y0 = int(math.floor(float(poly[:, 1].min()))) - pad
    x1 = int(math.ceil(float(poly[:, 0].max()))) + pad
    y1 = int(math.ceil(float(poly[:, 1].max()))) + pad
    local = (poly - np.array([x0, y0], dtype=np.float32)).astype(np.float32)
    inside = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    cv2.fillPoly(
        inside, [np.round(local * (1 << SUBPIXEL_BITS)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS
    )
    ys, xs = np.mgrid[0 : inside.shape[0], 0 : inside.shape[1]].astype(np.float32)
    distance = np.full(inside.shape, np.inf, dtype=np.float32)
    for a, b in zip(local, np.roll(local, -1, axis=0), strict=True):
        edge = b - a
        length2 = float(edge @ edge)
        t = ((xs - a[0]) * edge[0] + (ys - a[1]) * edge[1]) / length2 if length2 > 0 else np.zeros_like(xs)
        t = np.clip(t, 0.0, 1.0)
        np.minimum(distance, np.hypot(xs - a[0] - t * edge[0], ys - a[1] - t * edge[1]), out=distance)
    return x0, y0, np.where(inside > 0, distance, -distance)


def _paste(canvas: np.ndarray, window: np.ndarray, x0: int, y0: int, combine: Any) -> None:
    """``canvas[region] = combine(canvas[region], window[part])`` for the part of the window on the canvas."""
    height, width = canvas.shape
    wy0, wx0 = max(0, -y0), max(0, -x0)
    cy0, cx0 = max(0, y0), max(0, x0)
    cy1, cx1 = min(height, y0 + window.shape[0]), min(width, x0 + window.shape[1])
    if cy1 <= cy0 or cx1 <= cx0:
        return
    region = (slice(cy0, cy1), slice(cx0, cx1))
    canvas[region] = combine(canvas[region], window[wy0 : wy0 + cy1 - cy0, wx0 : wx0 + cx1 - cx0])


def make_db_targets(
    polys: Sequence[np.ndarray],
    ignore: Sequence[bool],
    height: int,
    width: int,
    shrink_ratio: float = 0.4,
    exhaustive: bool = True,
) -> DBTargets:
    """The DB targets of lines ``polys`` (pixel coordinates, any number of points) on an image of this size."""
    prob = np.zeros((height, width), dtype=np.float32)
    prob_mask = np.ones((height, width), dtype=np.float32)
    border = np.zeros((height, width), dtype=np.float32)  # 1 - d / D, max over lines
    thresh_mask = np.zeros((height, width), dtype=np.float32)
    masked: list[tuple[int, int, np.ndarray]] = []  # (x0, y0, window) of lines excluded from the loss
    for poly, ignored in zip(polys, ignore, strict=True):
        poly = np.asarray(poly, dtype=np.float32).reshape(-1, 2)
        distance = shrink_distance(poly, shrink_ratio)
        rect_side = min(cv2.minAreaRect(poly)[1]) if len(poly) >= 3 else 0.0
        x0, y0, field = _signed_border_distance(poly, pad=int(math.ceil(distance)) + 2)
        core = field >= distance
        if ignored or rect_side < MIN_LINE_SIDE or distance <= 0 or not core.any():
            masked.append((x0, y0, (field >= 0).astype(np.float32)))
            continue
        _paste(prob, core.astype(np.float32), x0, y0, np.maximum)
        near = np.abs(field) <= distance
        _paste(border, np.where(near, 1.0 - np.abs(field) / distance, 0.0).astype(np.float32), x0, y0, np.maximum)
        _paste(thresh_mask, (field >= -distance).astype(np.float32), x0, y0, np.maximum)
    if not exhaustive:
        # Unlabelled text may be anywhere else: only the labelled lines and their surroundings count.
        prob_mask = thresh_mask.copy()
    for x0, y0, window in masked:
        _paste(prob_mask, 1.0 - window, x0, y0, np.minimum)
    thresh = border * (THRESH_MAX - THRESH_MIN) + THRESH_MIN
    return DBTargets(prob=prob, prob_mask=prob_mask, thresh=thresh, thresh_mask=thresh_mask)


# --- network inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionSample:
    """One network input with its targets and the polygons they were made from (network coordinates)."""

    image: np.ndarray  # float32 [3, S, S], normalised
    targets: DBTargets
    polys: list[np.ndarray]
    ignore: list[bool]
    exhaustive: bool
    content: tuple[int, int]  # (height, width) of the image content inside the padded input
    source: str


@dataclass(frozen=True)
class Augmentation:
    """Random geometry of training samples."""

    scale: tuple[float, float] = (0.5, 1.5)  # long side, as a fraction of the input size
    p_quarter_turn: float = 0.1  # rotate the scene by +-90 degrees (sideways text)
    crop_tries: int = 10  # attempts to find a crop that cuts no line in half


def _scale_polys(polys: Sequence[np.ndarray], sx: float, sy: float) -> list[np.ndarray]:
    # Pixel centres at integers before and after: x' = (x + 0.5) * s - 0.5.
    return [((p + 0.5) * np.array([sx, sy], dtype=np.float32) - 0.5).astype(np.float32) for p in polys]


def _cuts_a_line(polys: Sequence[np.ndarray], x: int, y: int, size: int) -> bool:
    for poly in polys:
        inside = (poly[:, 0] >= x) & (poly[:, 0] < x + size) & (poly[:, 1] >= y) & (poly[:, 1] < y + size)
        if inside.any() and not inside.all():
            return True
        if not inside.any():  # wholly outside unless the crop lies within the line's box
            x0, y0 = poly.min(axis=0)
            x1, y1 = poly.max(axis=0)
            if x0 < x + size and x1 >= x and y0 < y + size and y1 >= y:
                return True
    return False


class DetectionSamples(Dataset):
    """Network inputs and DB targets of a scene dataset: random crops (``train``) or runtime-style resizing.

    ``input_size``: side of the square inputs. In ``eval`` mode images are prepared as the
    runtime does with ``max_side = input_size`` and padded to the square. Training randomness
    depends only on ``(seed, epoch, index)``.
    """

    def __init__(
        self,
        scenes: Dataset,
        cfg: DetectorConfig,
        input_size: int,
        mode: Literal["train", "eval"],
        seed: int = 0,
        augmentation: Augmentation | None = None,
    ) -> None:
        if input_size % cfg.size_multiple:
            raise ValueError(f"input_size ({input_size}) must be a multiple of {cfg.size_multiple}")
        self.scenes = scenes
        self.cfg = cfg
        self.eval_cfg = cfg.model_copy(update={"max_side": input_size})
        self.input_size = int(input_size)
        self.mode = mode
        self.seed = int(seed)
        self.augmentation = augmentation or Augmentation()
        self.epoch = 0

    @property
    def skipped(self) -> list[str]:
        return list(getattr(self.scenes, "skipped", []))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.scenes, "set_epoch"):
            self.scenes.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.scenes)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> DetectionSample | SkippedSample:
        item = self.scenes[index]
        if isinstance(item, SkippedSample):
            return item
        if self.mode == "eval":
            return self._eval_sample(item)
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 0xDE7EC7])
        return self._train_sample(item, rng)

    def _finish(
        self, canvas: np.ndarray, polys: list[np.ndarray], item: SceneItem, content: tuple[int, int]
    ) -> DetectionSample:
        targets = make_db_targets(
            polys, item.ignore, self.input_size, self.input_size, self.cfg.shrink_ratio, item.exhaustive
        )
        return DetectionSample(
            image=canvas,
            targets=targets,
            polys=polys,
            ignore=list(item.ignore),
            exhaustive=item.exhaustive,
            content=content,
            source=item.source,
        )

    def _eval_sample(self, item: SceneItem) -> DetectionSample:
        prepared = prepare_image(item.image, self.eval_cfg)
        canvas = np.zeros((3, self.input_size, self.input_size), dtype=np.float32)
        canvas[:, : prepared.tensor.shape[1], : prepared.tensor.shape[2]] = prepared.tensor
        (h, w), (oh, ow) = prepared.resized, prepared.original
        return self._finish(canvas, _scale_polys(item.polys, w / ow, h / oh), item, prepared.resized)

    def _train_sample(self, item: SceneItem, rng: np.random.Generator) -> DetectionSample:
        aug, size = self.augmentation, self.input_size
        image, polys = item.image, [p.copy() for p in item.polys]
        if rng.random() < aug.p_quarter_turn:
            image, polys = _quarter_turn(image, polys, clockwise=bool(rng.random() < 0.5))
        height, width = image.shape[:2]
        scale = size * rng.uniform(*aug.scale) / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        polys = _scale_polys(polys, new_w / width, new_h / height)
        # The crop origin: inside the image when it is larger than the input, else the image
        # lands somewhere in the input and the rest is padding.
        for _ in range(aug.crop_tries):
            x = int(rng.integers(min(0, new_w - size), max(0, new_w - size) + 1))
            y = int(rng.integers(min(0, new_h - size), max(0, new_h - size) + 1))
            if not _cuts_a_line(polys, x, y, size):
                break
        canvas_u8 = np.empty((size, size, 3), dtype=np.uint8)
        # Padding at the mean colour normalises to 0, as the runtime pads.
        canvas_u8[:] = np.clip(np.round(np.asarray(self.cfg.mean) * 255), 0, 255).astype(np.uint8)
        sx0, sy0 = max(0, x), max(0, y)
        dx0, dy0 = max(0, -x), max(0, -y)
        w, h = min(new_w - sx0, size - dx0), min(new_h - sy0, size - dy0)
        canvas_u8[dy0 : dy0 + h, dx0 : dx0 + w] = image[sy0 : sy0 + h, sx0 : sx0 + w]
        polys = [p - np.array([x, y], dtype=np.float32) for p in polys]
        return self._finish(normalise(canvas_u8, self.cfg), polys, item, (size, size))


def _quarter_turn(image: np.ndarray, polys: list[np.ndarray], clockwise: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    height, width = image.shape[:2]
    if clockwise:  # (x, y) -> (H - 1 - y, x)
        return np.ascontiguousarray(np.rot90(image, -1)), [np.stack([height - 1 - p[:, 1], p[:, 0]], 1) for p in polys]
    # counter-clockwise: (x, y) -> (y, W - 1 - x)
    return np.ascontiguousarray(np.rot90(image, 1)), [np.stack([p[:, 1], width - 1 - p[:, 0]], 1) for p in polys]


@dataclass
class DetectionBatch:
    """Stacked inputs and targets (``[N, 3, S, S]`` and ``[N, 1, S, S]``) plus the per-sample polygons."""

    images: torch.Tensor
    prob: torch.Tensor
    prob_mask: torch.Tensor
    thresh: torch.Tensor
    thresh_mask: torch.Tensor
    polys: list[list[np.ndarray]]
    ignore: list[list[bool]]
    exhaustive: list[bool]
    content: list[tuple[int, int]]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.polys)

    def pin_memory(self) -> DetectionBatch:
        for name in ("images", "prob", "prob_mask", "thresh", "thresh_mask"):
            setattr(self, name, getattr(self, name).pin_memory())
        return self


def collate_detection(samples: Sequence[DetectionSample | SkippedSample | None]) -> DetectionBatch:
    """Stack the usable samples; the reasons of the skipped ones travel with the batch."""
    usable = [s for s in samples if isinstance(s, DetectionSample)]
    skipped = [
        s.reason if isinstance(s, SkippedSample) else "empty sample"
        for s in samples
        if not isinstance(s, DetectionSample)
    ]

    def stack(get: Any) -> torch.Tensor:
        if not usable:
            return torch.zeros(0, 1, 1, 1)
        return torch.from_numpy(np.stack([get(s) for s in usable]))

    return DetectionBatch(
        images=stack(lambda s: s.image) if usable else torch.zeros(0, 3, 1, 1),
        prob=stack(lambda s: s.targets.prob[None]),
        prob_mask=stack(lambda s: s.targets.prob_mask[None]),
        thresh=stack(lambda s: s.targets.thresh[None]),
        thresh_mask=stack(lambda s: s.targets.thresh_mask[None]),
        polys=[s.polys for s in usable],
        ignore=[s.ignore for s in usable],
        exhaustive=[s.exhaustive for s in usable],
        content=[s.content for s in usable],
        skipped=skipped,
    )
