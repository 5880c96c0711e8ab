"""Turn a cropped text-line image into the network's input tensor (numpy and OpenCV only).

Training and the ONNX runtime both call :func:`prepare_line`, so a model always sees images
prepared the same way. The steps are split so that the runtime can pad a batch of lines to a
common width: :func:`to_line_strip` (gray, vertical handling, resize) then
:func:`pad_and_normalise`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgeocr.core.errors import ImageError
from edgeocr.core.preprocess import light_background, otsu_level
from edgeocr.core.recognizer_config import RecognizerConfig


def to_gray(img: np.ndarray) -> np.ndarray:
    """A 2-D uint8 grayscale copy of a gray ``[H, W]``/``[H, W, 1]``, BGR or BGRA uint8 image."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if img.ndim != 2:
        raise ImageError(f"expected a gray [H, W] or BGR [H, W, 3] image, got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ImageError(f"image is empty (shape {img.shape})")
    return np.ascontiguousarray(img)


def is_vertical(img: np.ndarray, ratio: float = 1.5) -> bool:
    """True when the crop is taller than ``ratio`` times its width (stacked, upright characters)."""
    return img.shape[0] > ratio * img.shape[1]


def _ink_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean ink mask of a gray crop: Otsu's split, ink the class that is not the background
    (the polarity rule of the ``polarity`` preprocessing step)."""
    smooth = cv2.GaussianBlur(gray, (3, 3), 0)
    level = otsu_level(smooth)
    bright = smooth > level
    return ~bright if light_background(smooth, level) else bright


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def character_rows(gray: np.ndarray) -> list[tuple[int, int]] | None:
    """Row spans ``[top, bottom)`` of the characters of a vertical code, from the ink's row profile.

    Rows whose ink rises clearly above the crop's least-inked rows (a frame or panel edge that
    runs the whole height is the baseline, not a character) are character rows; runs of them are
    characters. Measured against the typical character height (the median run among the taller
    ones): a short run is a fragment of a character broken by faint print and joins its nearer
    neighbour when the two together are not taller than a character; what stays tiny is a speck
    and is dropped; a run taller than 1.6 characters holds touching characters and is split
    evenly. None when fewer than two characters show (no gaps to cut at).
    """
    return _character_rows(_ink_mask(gray))


def _character_rows(ink: np.ndarray) -> list[tuple[int, int]] | None:
    """:func:`character_rows` of a crop's boolean ink mask."""
    profile = ink.sum(axis=1).astype(np.float64)
    base, peak = np.percentile(profile, 5), np.percentile(profile, 90)
    if peak - base < 2:
        return None
    runs = _runs(profile - base > 0.12 * (peak - base))
    if len(runs) < 2:
        return None
    heights = np.array([b - a for a, b in runs], np.float64)
    typical = float(np.median(heights[heights >= 0.5 * np.percentile(heights, 75)]))
    merged = True
    while merged and len(runs) > 1:
        merged = False
        for i in sorted(range(len(runs)), key=lambda k: runs[k][1] - runs[k][0]):
            top, bottom = runs[i]
            if bottom - top >= 0.6 * typical:
                break
            gaps = [
                (runs[i][0] - runs[i - 1][1], i - 1) if i > 0 else None,
                (runs[i + 1][0] - runs[i][1], i + 1) if i + 1 < len(runs) else None,
            ]
            _, j = min(g for g in gaps if g is not None)
            lo, hi = min(i, j), max(i, j)
            if runs[hi][1] - runs[lo][0] <= 1.25 * typical:
                runs[lo : hi + 1] = [(runs[lo][0], runs[hi][1])]
                merged = True
                break
    spans: list[tuple[int, int]] = []
    for top, bottom in runs:
        height = bottom - top
        if height < 0.3 * typical:
            continue
        pieces = max(1, round(height / typical)) if height > 1.6 * typical else 1
        cuts = np.linspace(top, bottom, pieces + 1).round().astype(int)
        spans += [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return spans if len(spans) >= 2 else None


def _cells_by_pitch(img: np.ndarray) -> list[np.ndarray]:
    """Cells of height about the crop width: the fallback when no gaps between characters show."""
    height, width = img.shape[:2]
    n_cells = max(1, round(height / width))
    bounds = np.linspace(0, height, n_cells + 1).round().astype(int)
    return [img[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def vertical_to_horizontal(img: np.ndarray) -> np.ndarray:
    """Re-lay vertical text (upright characters one under the next) as one horizontal line.

    Rotating would turn the characters sideways, which the recogniser never saw. Instead the
    crop is cut between characters (:func:`character_rows`: at the middle of each gap in the
    ink's row profile) and the cells are placed left to right, each trimmed to its ink's columns
    plus a margin and centred on a common height, padded with the crop's background. When no
    gaps show (touching or faint characters), the crop is cut into ``round(H / W)`` cells of
    equal height. Works for gray and colour images; returns a new array.

    Caveat: a crop holding one narrow horizontal character (a lone "1") can also exceed the
    ratio; it then stays one cell. ``RecognizerConfig.vertical`` turns this handling off.
    """
    gray = to_gray(img)
    height = img.shape[0]
    ink = _ink_mask(gray)
    spans = _character_rows(ink)
    if spans is None:
        cells = _cells_by_pitch(img)
    else:
        cuts = [0] + [(b0 + a1) // 2 for (_, b0), (a1, _) in zip(spans[:-1], spans[1:], strict=True)] + [height]
        cells = []
        for (top, bottom), (lo, hi) in zip(spans, zip(cuts[:-1], cuts[1:], strict=True), strict=True):
            columns = np.flatnonzero(ink[top:bottom].any(axis=0))
            margin = max(1, round(0.15 * (bottom - top)))
            left = max(0, int(columns[0]) - margin) if columns.size else 0
            right = min(img.shape[1], int(columns[-1]) + 1 + margin) if columns.size else img.shape[1]
            cells.append(img[lo:hi, left:right])
    cell_height = max(cell.shape[0] for cell in cells)
    background = background_level(gray)
    fill = background if img.ndim == 2 else tuple(int(v) for v in np.median(img.reshape(-1, img.shape[2]), axis=0))
    padded = []
    for cell in cells:
        extra = cell_height - cell.shape[0]
        padded.append(cv2.copyMakeBorder(cell, extra // 2, extra - extra // 2, 0, 0, cv2.BORDER_CONSTANT, value=fill))
    return np.ascontiguousarray(np.concatenate(padded, axis=1))


def _content_width(height: int, width: int, cfg: RecognizerConfig) -> int:
    if cfg.width_policy == "stretch":
        return cfg.max_width
    scaled = max(1, round(width * cfg.input_height / height))
    return min(scaled, cfg.max_width)  # squash only what would not fit


def padded_width(content_width: int, cfg: RecognizerConfig) -> int:
    """Input width for a line whose resized content is ``content_width`` pixels wide."""
    width = max(content_width, cfg.min_width)
    width = math.ceil(width / cfg.width_multiple) * cfg.width_multiple
    return min(width, cfg.max_width)


def to_line_strip(img: np.ndarray, cfg: RecognizerConfig) -> np.ndarray:
    """Gray uint8 ``[input_height, w]`` strip: vertical text re-laid, resized, not yet padded."""
    gray = to_gray(img)
    if cfg.vertical and is_vertical(gray, cfg.vertical_ratio):
        gray = vertical_to_horizontal(gray)
    height, width = gray.shape
    target_width = _content_width(height, width, cfg)
    shrinking = target_width < width or cfg.input_height < height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (target_width, cfg.input_height), interpolation=interpolation)


def background_level(gray: np.ndarray) -> int:
    """Estimated background gray level: the median of the border pixels.

    Codes are printed dark-on-light and light-on-dark, so a fixed padding colour would draw a
    fake edge for one of them; the border of a crop is mostly background.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return int(np.median(border))


def pad_and_normalise(strip: np.ndarray, cfg: RecognizerConfig, width: int | None = None) -> np.ndarray:
    """Pad ``strip`` on the right with its background to ``width`` and normalise: float32 ``[1, H, W]``.

    ``width`` defaults to the strip's own padded width; the runtime passes a batch's maximum.
    """
    target = padded_width(strip.shape[1], cfg) if width is None else width
    if target < strip.shape[1]:
        raise ValueError(f"cannot pad a strip of width {strip.shape[1]} to the smaller width {target}")
    canvas = np.full((cfg.input_height, target), background_level(strip), dtype=np.uint8)
    canvas[:, : strip.shape[1]] = strip
    normalised = (canvas.astype(np.float32) / 255.0 - cfg.mean) / cfg.std
    return normalised[np.newaxis].astype(np.float32, copy=False)


def prepare_line(img: np.ndarray, cfg: RecognizerConfig, width: int | None = None) -> np.ndarray:
    """A cropped line image (gray or BGR uint8) as the network input, float32 ``[1, H, W]``."""
    return pad_and_normalise(to_line_strip(img, cfg), cfg, width)
