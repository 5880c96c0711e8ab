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


def vertical_to_horizontal(img: np.ndarray) -> np.ndarray:
    """Re-lay vertical text (upright characters one under the next) as one horizontal line.

    Rotating would turn the characters sideways, which the recogniser never saw. Instead the
    crop is cut along its height into ``round(H / W)`` cells of height about the crop width
    (one character each for a tight crop with square-ish character pitch) and the cells are
    placed left to right. Works for gray and colour images; returns a new array.

    Caveat: a crop holding one narrow horizontal character (a lone "1") can also exceed the
    ratio and would be cut into pieces; ``RecognizerConfig.vertical`` turns this handling off
    for applications that read such crops.
    """
    height, width = img.shape[:2]
    n_cells = max(1, round(height / width))
    cell_height = max(1, round(height / n_cells))
    if cell_height * n_cells != height:
        # Resample the height so the cells are exactly equal (a few pixels at most).
        img = cv2.resize(img, (width, cell_height * n_cells), interpolation=cv2.INTER_LINEAR)
    cells = [img[i * cell_height : (i + 1) * cell_height] for i in range(n_cells)]
    return np.ascontiguousarray(np.concatenate(cells, axis=1))


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
