"""A DB text-line detector's numpy pre- and post-processing (numpy and OpenCV only).

Shared by inference (:mod:`edgeocr.runtime.detector`) and by training's data and validation
(:mod:`edgeocr.data.scene_dataset`, :mod:`edgeocr.train.detector_trainer`), so that both see the same
inputs and score the same boxes; it sits below both.

1. :func:`prepare_image` resizes the image keeping its aspect ratio (long side to
   ``max_side``, see :class:`DetectorConfig`), normalises it per channel and pads it with zeros
   (the mean colour) to a multiple of 32; :func:`stack_inputs` pads a batch to one size.
2. The network returns the probability that each pixel lies in the shrunk core of a line.
3. :func:`boxes_from_probability_map` thresholds the map, takes each blob's outer contour,
   fits a rotated rectangle (``cv2.minAreaRect``), scores it by the mean probability inside the
   contour and grows it back by DB's distance rule, done exactly on the rectangle: each side
   moves out by ``area * ratio / perimeter`` (the polygon offset of a rectangle is a
   rectangle, so no polygon-clipping library is needed). By default the ratio is the one that
   undoes the training shrink for that rectangle exactly (:func:`inverse_shrink_distance`):
   DB's fixed 1.5 gives back only about 60 % of a long line's height from a perfect core.
4. :func:`scale_to_original` maps the boxes back to the original image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgeocr.core.crops import order_quad
from edgeocr.core.detector_config import DetectorConfig
from edgeocr.core.errors import ImageError


@dataclass(frozen=True)
class PreparedImage:
    """A network input and how it maps back to the original image."""

    tensor: np.ndarray  # float32 [3, H, W], H and W multiples of size_multiple
    resized: tuple[int, int]  # (height, width) of the image content inside the padded tensor
    original: tuple[int, int]  # (height, width) of the original image


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A 3-channel uint8 BGR view or copy of a gray, BGR or BGRA uint8 image; ImageError otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected a gray [H, W] or BGR [H, W, 3] image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"image is empty (shape {image.shape})")
    return np.ascontiguousarray(image)  # OpenCV wants contiguous planes; a no-op for whole images


def resized_size(height: int, width: int, cfg: DetectorConfig) -> tuple[int, int]:
    """(height, width) an image of this size is resized to before padding (aspect kept)."""
    long_side = max(height, width)
    scale = cfg.max_side / long_side
    if cfg.resize == "shrink_only":
        scale = min(1.0, scale)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def padded(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return -(-size // multiple) * multiple


def normalise(image: np.ndarray, cfg: DetectorConfig, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 BGR ``[H, W, 3]`` to float32 ``[3, H, W]``: (pixel / 255 - mean) / std per channel.

    Written into ``out`` (a ``[3, H, W]`` float32 array or view) when given. One OpenCV pass per
    plane (``addWeighted`` with a zero second term converts, scales and shifts at once): ten times
    faster than numpy's assign, multiply and subtract, which took 2.9 ms of a 640x480 frame.
    """
    if out is None:
        out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for channel, plane in enumerate(cv2.split(image)):
        scale = 1.0 / (255.0 * cfg.std[channel])
        shift = -cfg.mean[channel] / cfg.std[channel]
        target = out[channel]
        if target.flags.c_contiguous:
            cv2.addWeighted(plane, scale, plane, 0.0, shift, dst=target, dtype=cv2.CV_32F)
        else:  # a padded tensor's left part: OpenCV would write to a new array, not the view
            target[:] = cv2.addWeighted(plane, scale, plane, 0.0, shift, dtype=cv2.CV_32F)
    return out


def prepare_image(image: np.ndarray, cfg: DetectorConfig) -> PreparedImage:
    """Resize (aspect kept), normalise and zero-pad ``image`` to multiples of ``cfg.size_multiple``."""
    bgr = to_bgr(image)
    height, width = bgr.shape[:2]
    new_h, new_w = resized_size(height, width, cfg)
    if (new_h, new_w) != (height, width):
        shrinking = new_h * new_w < height * width
        bgr = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    shape = (3, padded(new_h, cfg.size_multiple), padded(new_w, cfg.size_multiple))
    tensor = np.empty(shape, np.float32) if shape[1:] == (new_h, new_w) else np.zeros(shape, np.float32)
    normalise(bgr, cfg, out=tensor[:, :new_h, :new_w])
    return PreparedImage(tensor=tensor, resized=(new_h, new_w), original=(height, width))


def stack_inputs(prepared: Sequence[PreparedImage]) -> np.ndarray:
    """One float32 ``[N, 3, H, W]`` batch, each input zero-padded to the largest height and width."""
    if len(prepared) == 1:  # the common case of one frame: no copy
        return prepared[0].tensor[None]
    height = max(p.tensor.shape[1] for p in prepared)
    width = max(p.tensor.shape[2] for p in prepared)
    batch = np.zeros((len(prepared), 3, height, width), dtype=np.float32)
    for i, p in enumerate(prepared):
        batch[i, :, : p.tensor.shape[1], : p.tensor.shape[2]] = p.tensor
    return batch


def inverse_shrink_distance(width: float, height: float, shrink_ratio: float) -> float:
    """The distance D that grows a ``width`` x ``height`` rectangle back to the one it was shrunk from.

    Training shrinks a rectangle W x H by D = k W H / (2 (W + H)) with k = 1 - r^2; for the
    shrunk w = W - 2D, h = H - 2D this is the positive root of
    4 (2 - k) D^2 + 2 (w + h) (1 - k) D - k w h = 0.
    """
    k = 1.0 - shrink_ratio**2
    a, b, c = 4.0 * (2.0 - k), 2.0 * (width + height) * (1.0 - k), -k * width * height
    return (-b + math.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)


def unclip_rect(rect: tuple, cfg: DetectorConfig) -> tuple:
    """Grow a rotated rectangle ``((cx, cy), (w, h), angle)`` on every side by DB's distance
    area * ratio / perimeter, with ``cfg.unclip_ratio`` or, when it is None, the ratio that
    undoes the training shrink exactly (:func:`inverse_shrink_distance`)."""
    (cx, cy), (w, h), angle = rect
    if w <= 0 or h <= 0:
        return rect
    if cfg.unclip_ratio is None:
        distance = inverse_shrink_distance(w, h, cfg.shrink_ratio)
    else:
        distance = w * h * cfg.unclip_ratio / (2.0 * (w + h))
    return (cx, cy), (w + 2 * distance, h + 2 * distance), angle


def _pixel_extent_padding(width: float, height: float, pixels: float) -> float:
    """How much to add to both sides of a blob's minimum-area rectangle so its area matches the blob's
    pixel count, between 0 and 1.

    The rectangle runs through the centres of the blob's border pixels: for a blob aligned with
    the pixel grid the true extent is one pixel more each way, for a tilted straight edge the
    hull already reaches the edge. Matching the area covers both; the unclip step multiplies
    any error on a thin core several times, so it matters.
    """
    s = width + height
    root = s * s - 4.0 * (width * height - pixels)
    pad = (-s + math.sqrt(root)) / 2.0 if root > 0 else 0.0
    return min(1.0, max(0.0, pad))


def boxes_from_probability_map(prob: np.ndarray, cfg: DetectorConfig) -> list[tuple[np.ndarray, float]]:
    """Rotated line boxes ``([4, 2] float32 corners, score)`` in the map's pixel coordinates.

    ``prob`` is one ``[H, W]`` probability map (crop it to the image content first). Each
    connected blob above ``binary_threshold`` gives one candidate: its minimum-area rectangle
    (padded to the blob's pixel extent, see :func:`_pixel_extent_padding`), scored by the mean
    probability inside the contour, then grown by :func:`unclip_rect`. Candidates below
    ``box_threshold``, ``min_box_side`` or ``min_box_area`` are dropped.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"expected a [H, W] probability map, got shape {prob.shape}")
    bitmap = (prob > cfg.binary_threshold).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) > cfg.max_candidates:
        contours = sorted(contours, key=cv2.contourArea, reverse=True)[: cfg.max_candidates]
    boxes: list[tuple[np.ndarray, float]] = []
    height, width = prob.shape
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        mask = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(mask, [contour - np.array([x, y], dtype=contour.dtype)], 1)
        score = float(cv2.mean(prob[y : y + h, x : x + w], mask=mask)[0])
        if score < cfg.box_threshold:
            continue
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        pad = _pixel_extent_padding(rw, rh, float(cv2.countNonZero(mask)))
        grown = unclip_rect(((cx, cy), (rw + pad, rh + pad), angle), cfg)
        gw, gh = grown[1]
        if min(gw, gh) < cfg.min_box_side or gw * gh < cfg.min_box_area:
            continue
        corners = cv2.boxPoints(grown)
        # A box may grow past the image edge: clip it to the image (the map is cropped to the content).
        corners[:, 0] = np.clip(corners[:, 0], -0.5, width - 0.5)
        corners[:, 1] = np.clip(corners[:, 1], -0.5, height - 0.5)
        boxes.append((order_quad(corners), score))
    return boxes


def scale_to_original(quad: np.ndarray, resized: tuple[int, int], original: tuple[int, int]) -> np.ndarray:
    """Map corners from the resized image back to the original (pixel centres at integers in both)."""
    sy, sx = original[0] / resized[0], original[1] / resized[1]
    out = (quad.astype(np.float64) + 0.5) * np.array([sx, sy]) - 0.5
    out[:, 0] = np.clip(out[:, 0], -0.5, original[1] - 0.5)
    out[:, 1] = np.clip(out[:, 1], -0.5, original[0] - 0.5)
    return out.astype(np.float32)
