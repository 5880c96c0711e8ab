"""Cut detected text lines out of an image as upright crops for the recogniser (numpy + OpenCV).

A line is a quadrilateral whose corner order carries its orientation: ``p0 -> p1`` is the top
edge of the text as it reads, ``p1 -> p2`` the right edge (clockwise in image coordinates).
:func:`crop_line` warps that quad onto an upright rectangle of its own size, so the top edge
becomes the crop's top row whatever the line's rotation. It never turns a tall crop sideways:
a tall crop is usually vertical text (upright characters stacked top to bottom), and the
recogniser re-lays tall crops itself (see :mod:`edgeocr.core.lineimage`).

:func:`order_quad` gives four corners the order the detector reports: clockwise, starting at
the corner where the edge closest to horizontal begins, so a tilted line keeps its top edge
first and a tall box stays tall.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgeocr.core.errors import ImageError


def _as_quad(poly: np.ndarray | list) -> np.ndarray:
    quad = np.asarray(poly, dtype=np.float32).reshape(-1, 2)
    if quad.shape != (4, 2):
        raise ValueError(f"a line polygon needs 4 corners (8 numbers), got {np.asarray(poly).size} numbers")
    if not np.isfinite(quad).all():
        raise ValueError("a line polygon has non-finite coordinates")
    return quad


def order_quad(points: np.ndarray | list) -> np.ndarray:
    """The 4 corners as float32 ``[4, 2]``, clockwise (y down), starting where the most horizontal
    left-to-right edge begins: top-left, top-right, bottom-right, bottom-left for a level line."""
    quad = _as_quad(points)
    centre = quad.mean(axis=0)
    # Clockwise on screen is increasing atan2 when y points down.
    order = np.argsort(np.arctan2(quad[:, 1] - centre[1], quad[:, 0] - centre[0]), kind="stable")
    quad = quad[order]
    edges = np.roll(quad, -1, axis=0) - quad
    # The top edge of a clockwise quad runs left to right; among such edges, the flattest one.
    steepness = np.where(edges[:, 0] > 0, np.abs(np.arctan2(edges[:, 1], edges[:, 0])), np.inf)
    return np.roll(quad, -int(np.argmin(steepness)), axis=0)


def quad_angle(quad: np.ndarray) -> float:
    """Angle in degrees of the edge ``p0 -> p1`` against the x axis (positive: turned clockwise on screen)."""
    dx, dy = float(quad[1, 0] - quad[0, 0]), float(quad[1, 1] - quad[0, 1])
    return math.degrees(math.atan2(dy, dx))


_HALF_PIXEL_FORWARD = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
_HALF_PIXEL_BACK = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])


def crop_line(image: np.ndarray, poly: np.ndarray | list) -> np.ndarray:
    """An upright crop of the line ``poly`` (4 corners, clockwise from the text's top-left; a flat
    list of 8 numbers works too) from a uint8 gray or BGR ``image``. The one crop of the package:
    the Reader, the CLI and the service all cut lines here, so one polygon gives the same pixels.

    The crop is as wide as the longer of the top and bottom edges and as tall as the longer of
    the side edges (at least 1 x 1; the longer edge keeps the whole line under perspective): a
    perspective warp of the quad onto that rectangle, with the image border replicated where the
    quad reaches outside it. Corners are pixel edges, so a quad turned by 90 degrees maps pixels
    exactly, and an integer axis-aligned rectangle inside the image is sliced (the same pixels as
    the warp, cheaper). Tall lines stay tall.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"expected a non-empty uint8 gray or BGR image, got dtype {image.dtype}, shape {image.shape}")
    quad = _as_quad(poly).astype(np.float64)
    top, bottom = np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])
    left, right = np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])
    width, height = max(1, round(max(top, bottom))), max(1, round(max(left, right)))
    x0, y0 = quad[0]
    rect = np.array([[x0, y0], [x0 + width, y0], [x0 + width, y0 + height], [x0, y0 + height]])
    image_h, image_w = image.shape[:2]
    if (
        np.array_equal(quad, rect)
        and float(x0).is_integer()
        and float(y0).is_integer()
        and x0 >= 0
        and y0 >= 0
        and x0 + width <= image_w
        and y0 + height <= image_h
    ):
        return image[int(y0) : int(y0) + height, int(x0) : int(x0) + width].copy()
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    try:
        transform = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    except cv2.error as exc:  # three corners on one line
        raise ValueError(f"degenerate line polygon {quad.tolist()}") from exc
    # Corners are pixel edges (pixel i spans [i, i + 1)) but OpenCV puts pixel i's centre at i:
    # shift by half a pixel on both sides so that e.g. a 90-degree turn maps pixels exactly.
    transform = _HALF_PIXEL_BACK @ transform @ _HALF_PIXEL_FORWARD
    return cv2.warpPerspective(
        image, transform, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
