"""Image preprocessing as small, composable operations (numpy and OpenCV only).

Each operation is a frozen, validated config with an ``apply(image) -> image`` method, so a
pipeline is plain data: it can be written as a short string (``"gray|clahe:clip=2.0|otsu"``),
a list of dicts or YAML, stored beside a model, compared and printed back (:meth:`Pipeline.spec`).
``op`` names the operation and discriminates the union, as in ``{"op": "median", "ksize": 3}``.

Conventions shared by every operation:

* Inputs are uint8 gray ``[H, W]`` (``[H, W, 1]`` is squeezed) or BGR ``[H, W, 3]`` (BGRA
  accepted). Operations that only make sense on one channel (CLAHE, histogram equalisation,
  thresholds, polarity) convert colour to gray first and return gray; filters, morphology,
  deskew and resizing keep the channels. :class:`Normalize` returns float32 and must come last.
* Text is dark on light after :class:`Polarity`, and :class:`Morphology` speaks of the dark
  shapes by default (``close`` joins the dots of a dark dot-matrix print), unlike OpenCV, whose
  morphology grows and shrinks the bright ones.
* Borders follow OpenCV's defaults, which ``edgeocr.optimize.gpu_preprocess`` reproduces so that
  the torch version of a pipeline gives the same pixels (see its docstring for the exceptions).

Invalid parameters raise pydantic's ``ValidationError`` naming the field when an operation is
built directly, and :class:`PipelineError` naming the step and field when a pipeline is parsed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, Union

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeocr.core.errors import EdgeOCRError, ImageError

__all__ = [
    "AdaptiveThreshold",
    "Clahe",
    "Deskew",
    "EqualizeHist",
    "GaussianBlur",
    "Gray",
    "Invert",
    "MedianBlur",
    "Morphology",
    "Normalize",
    "OtsuThreshold",
    "Pipeline",
    "PipelineError",
    "Polarity",
    "PRESETS",
    "ResizePad",
    "parse_pipeline",
    "preset",
]


class PipelineError(EdgeOCRError, ValueError):
    """A preprocessing pipeline spec is malformed; the message names the step and the field."""


# --------------------------------------------------------------------------------------------
# Image helpers shared by the operations (and by the torch implementation).


def check_image(image: np.ndarray, op: str) -> np.ndarray:
    """``image`` as uint8 ``[H, W]`` or ``[H, W, 3|4]``; ImageError naming ``op`` otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ImageError(f"{op}: expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ImageError(f"{op}: expected a gray [H, W] or BGR [H, W, 3] image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"{op}: image is empty (shape {image.shape})")
    return image


def to_gray(image: np.ndarray, op: str = "gray") -> np.ndarray:
    """A 2-D uint8 gray version of a gray, BGR or BGRA uint8 image (the image itself if gray)."""
    image = check_image(image, op)
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(image, code)


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The pixels on the four edges of ``image``, ``[N]`` or ``[N, C]`` (corners counted twice)."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def background_value(image: np.ndarray) -> tuple[int, ...]:
    """Per-channel background estimate: the lower median of the border pixels.

    Codes are printed dark on light and light on dark, so padding with a fixed colour would
    draw a fake edge for one of them; the border of a crop is mostly background. The lower
    median (not the mean of the two middle values) keeps it an integer that torch reproduces.
    """
    border = border_pixels(image).reshape(-1, 1 if image.ndim == 2 else image.shape[2])
    k = (border.shape[0] - 1) // 2
    return tuple(int(v) for v in np.partition(border, k, axis=0)[k])


def otsu_level(gray: np.ndarray) -> int:
    """Otsu's threshold of a 2-D uint8 image: pixels above it are the bright class."""
    level, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return int(level)


def light_background(gray: np.ndarray, level: int) -> bool:
    """True when the background is the bright class of a gray image split at ``level``.

    Most border pixels are background in a line crop; when the border is split evenly the
    larger class of the whole image is taken as the background (text covers less area).
    """
    border = border_pixels(gray)
    bright = 2 * np.count_nonzero(border > level)
    if bright != border.size:
        return bright > border.size
    return 2 * np.count_nonzero(gray > level) >= gray.size


def resize_geometry(
    height: int, width: int, target_height: int, target_width: int, align: str, upscale: bool
) -> tuple[int, int, int, int]:
    """Where a ``height x width`` image goes in the target canvas: (new_h, new_w, top, left).

    One scale for both axes (the aspect ratio is kept), the largest that fits; ``upscale=False``
    caps it at 1. ``align='center'`` centres the content, ``'start'`` puts it top-left.
    """
    scale = min(target_height / height, target_width / width)
    if not upscale:
        scale = min(scale, 1.0)
    new_h = min(target_height, max(1, round(height * scale)))
    new_w = min(target_width, max(1, round(width * scale)))
    if align == "center":
        return new_h, new_w, (target_height - new_h) // 2, (target_width - new_w) // 2
    return new_h, new_w, 0, 0


def _odd(name: str, value: int) -> int:
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd, got {value}")
    return value


# --------------------------------------------------------------------------------------------
# Operations.


class PreprocessOp(BaseModel):
    """Base of the operations: frozen, no unknown fields, ``apply`` maps an image to an image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: str

    def apply(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - every op overrides it
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.apply(image)

    def apply_and_report(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """``apply`` plus what the op decided (ops that decide something override it)."""
        return self.apply(image), {}

    def spec(self) -> str:
        """This op as a pipeline string step, non-default parameters only (``median:ksize=5``)."""
        params = self.model_dump(exclude_defaults=True, exclude={"op"})
        if not params:
            return self.op
        return self.op + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in params.items())


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "/".join(_format_value(v) for v in value)
    return str(value)


class Gray(PreprocessOp):
    """Grayscale conversion (OpenCV's BGR weights). Accepts gray/BGR/BGRA, returns gray ``[H, W]``."""

    op: Literal["gray"] = Field(default="gray", description="Operation name: grayscale conversion.")

    def apply(self, image: np.ndarray) -> np.ndarray:
        return to_gray(image, self.op)


class Invert(PreprocessOp):
    """Photographic negative ``255 - x``. Accepts gray or BGR, returns the same shape."""

    op: Literal["invert"] = Field(default="invert", description="Operation name: invert every pixel.")

    def apply(self, image: np.ndarray) -> np.ndarray:
        return cv2.bitwise_not(check_image(image, self.op))


class GaussianBlur(PreprocessOp):
    """Gaussian smoothing (reflect-101 border). Accepts gray or BGR, returns the same shape."""

    op: Literal["gaussian"] = Field(default="gaussian", description="Operation name: Gaussian blur.")
    ksize: int = Field(default=3, ge=3, le=99, description="Kernel width and height in pixels; odd.")
    sigma: float = Field(
        default=0.0,
        ge=0.0,
        le=50.0,
        description="Standard deviation in pixels; 0 derives it from ksize as OpenCV does (0.8 for ksize 3).",
    )

    @field_validator("ksize")
    @classmethod
    def _ksize_is_odd(cls, value: int) -> int:
        return _odd("ksize", value)

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image, self.op)
        return cv2.GaussianBlur(image, (self.ksize, self.ksize), self.sigma, sigmaY=self.sigma)


class MedianBlur(PreprocessOp):
    """Median filter (replicated border): removes speckle, keeps edges. Gray or BGR in, same out."""

    op: Literal["median"] = Field(default="median", description="Operation name: median blur.")
    ksize: int = Field(default=3, ge=3, le=99, description="Window width and height in pixels; odd.")

    @field_validator("ksize")
    @classmethod
    def _ksize_is_odd(cls, value: int) -> int:
        return _odd("ksize", value)

    def apply(self, image: np.ndarray) -> np.ndarray:
        return cv2.medianBlur(check_image(image, self.op), self.ksize)


class Clahe(PreprocessOp):
    """Contrast-limited adaptive histogram equalisation. Gray/BGR in, gray out."""

    op: Literal["clahe"] = Field(default="clahe", description="Operation name: CLAHE.")
    clip: float = Field(
        default=2.0,
        gt=0.0,
        le=100.0,
        description="Contrast limit: histogram bins are clipped at this multiple of the mean bin count.",
    )
    tile: int = Field(default=8, ge=1, le=64, description="Tiles per side of the grid each equalised alone.")

    def apply(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image, self.op)
        return cv2.createCLAHE(clipLimit=self.clip, tileGridSize=(self.tile, self.tile)).apply(gray)


class EqualizeHist(PreprocessOp):
    """Global histogram equalisation. Gray/BGR in, gray out."""

    op: Literal["equalize"] = Field(default="equalize", description="Operation name: histogram equalisation.")

    def apply(self, image: np.ndarray) -> np.ndarray:
        return cv2.equalizeHist(to_gray(image, self.op))


class OtsuThreshold(PreprocessOp):
    """Global binarisation at Otsu's level. Gray/BGR in, gray ``{0, 255}`` out (above level -> 255)."""

    op: Literal["otsu"] = Field(default="otsu", description="Operation name: Otsu threshold.")
    invert: bool = Field(default=False, description="Swap the output: pixels above the level become 0.")

    def apply(self, image: np.ndarray) -> np.ndarray:
        kind = cv2.THRESH_BINARY_INV if self.invert else cv2.THRESH_BINARY
        return cv2.threshold(to_gray(image, self.op), 0, 255, kind | cv2.THRESH_OTSU)[1]


class AdaptiveThreshold(PreprocessOp):
    """Local binarisation for uneven light: a pixel is 255 when above its neighbourhood mean minus ``c``.

    Gray/BGR in, gray ``{0, 255}`` out. The neighbourhood mean is a box (``mean``) or Gaussian
    (``gaussian``) average over ``block x block`` pixels, replicated border.
    """

    op: Literal["adaptive"] = Field(default="adaptive", description="Operation name: adaptive threshold.")
    method: Literal["mean", "gaussian"] = Field(
        default="mean", description="Local average: 'mean' (box) or 'gaussian' (Gaussian-weighted)."
    )
    block: int = Field(
        default=31,
        ge=3,
        le=255,
        description="Neighbourhood width and height in pixels; odd, about a character's height.",
    )
    c: float = Field(
        default=10.0,
        ge=-255.0,
        le=255.0,
        description="Offset subtracted from the local mean; higher keeps only clearly darker pixels as ink.",
    )
    invert: bool = Field(default=False, description="Swap the output: pixels above the local level become 0.")

    @field_validator("block")
    @classmethod
    def _block_is_odd(cls, value: int) -> int:
        return _odd("block", value)

    def apply(self, image: np.ndarray) -> np.ndarray:
        method = cv2.ADAPTIVE_THRESH_MEAN_C if self.method == "mean" else cv2.ADAPTIVE_THRESH_GAUSSIAN_C
        kind = cv2.THRESH_BINARY_INV if self.invert else cv2.THRESH_BINARY
        return cv2.adaptiveThreshold(to_gray(image, self.op), 255, method, kind, self.block, self.c)


MorphMode = Literal["open", "close", "dilate", "erode"]
_SWAPPED_MODE = {"open": "close", "close": "open", "dilate": "erode", "erode": "dilate"}
_CV_MORPH = {"open": cv2.MORPH_OPEN, "close": cv2.MORPH_CLOSE, "dilate": cv2.MORPH_DILATE, "erode": cv2.MORPH_ERODE}
_CV_SHAPE = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}


class Morphology(PreprocessOp):
    """Morphological open/close/dilate/erode of the ``foreground`` shapes. Gray or BGR in, same out.

    With ``foreground='dark'`` (the default; text is dark after :class:`Polarity`) ``dilate``
    thickens dark strokes and ``close`` joins dark dots, i.e. OpenCV's erode/open on the pixels.
    Pixels outside the image are ignored (OpenCV's default border for morphology).
    """

    op: Literal["morph"] = Field(default="morph", description="Operation name: morphology.")
    mode: MorphMode = Field(
        default="close",
        description="'dilate' grows the shapes, 'erode' shrinks them, 'close' fills gaps (dilate then "
        "erode), 'open' removes specks (erode then dilate).",
    )
    ksize: int = Field(default=3, ge=1, le=99, description="Kernel width in pixels (anchored at ksize // 2).")
    ksize_y: int | None = Field(
        default=None, ge=1, le=99, description="Kernel height in pixels; None means ksize (a square kernel)."
    )
    shape: Literal["rect", "ellipse", "cross"] = Field(default="rect", description="Kernel shape.")
    iterations: int = Field(default=1, ge=1, le=10, description="Times each elementary step is repeated.")
    foreground: Literal["dark", "light"] = Field(
        default="dark",
        description="Which pixels form the shapes: 'dark' (text after polarity) or 'light' (OpenCV's convention).",
    )

    def kernel(self) -> np.ndarray:
        """The structuring element, uint8 ``[ksize_y, ksize]`` of 0/1."""
        return cv2.getStructuringElement(_CV_SHAPE[self.shape], (self.ksize, self.ksize_y or self.ksize))

    def light_mode(self) -> str:
        """The operation in OpenCV's terms (on bright shapes): dark dilate is light erode, etc."""
        return self.mode if self.foreground == "light" else _SWAPPED_MODE[self.mode]

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image, self.op)
        return cv2.morphologyEx(image, _CV_MORPH[self.light_mode()], self.kernel(), iterations=self.iterations)


class Polarity(PreprocessOp):
    """Make text dark on light (or ``target``): invert when the background is the other class.

    The background is the Otsu class holding most of the border pixels (see
    :func:`light_background`). Gray or BGR in, same shape out; :meth:`apply_and_report` says
    whether it inverted.
    """

    op: Literal["polarity"] = Field(default="polarity", description="Operation name: polarity normalisation.")
    target: Literal["dark_on_light", "light_on_dark"] = Field(
        default="dark_on_light", description="Polarity the output has: text colour on background colour."
    )

    def is_light_on_dark(self, image: np.ndarray) -> bool:
        """True when ``image`` shows light text on a dark background."""
        gray = to_gray(image, self.op)
        return not light_background(gray, otsu_level(gray))

    def apply_and_report(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        image = check_image(image, self.op)
        light_on_dark = self.is_light_on_dark(image)
        invert = light_on_dark != (self.target == "light_on_dark")
        out = cv2.bitwise_not(image) if invert else image
        return out, {"input": "light_on_dark" if light_on_dark else "dark_on_light", "inverted": invert}

    def apply(self, image: np.ndarray) -> np.ndarray:
        return self.apply_and_report(image)[0]


class Deskew(PreprocessOp):
    """Rotate a line crop or frame so that its text rows are horizontal. Gray or BGR in, same out.

    The angle is found by projection profiles: the stroke pixels (a strong black-hat or top-hat
    response, so either polarity, while labels and panels around the print give none) are
    projected across each candidate direction, and the direction whose row profile has the
    sharpest steps wins (0.5 degree steps, then 0.05 around the best). Unlike the min-area
    rectangle of the ink, this works for several lines and is not fooled by the outline of a
    label. The crop must hold the whole text: text cut by a crop edge makes a false step along
    that edge. It needs a line of about five characters or more (or several lines): on two to
    four characters the letter shapes outweigh the rows and the angle is ambiguous, so leave
    deskew out for such crops. Search is limited to +-max_angle; smaller corrections than
    min_angle are skipped (a resampled image is slightly blurred). With ``expand`` the canvas
    grows so no corner is cut, filled with the background value.
    """

    op: Literal["deskew"] = Field(default="deskew", description="Operation name: deskew.")
    max_angle: float = Field(default=15.0, gt=0.0, le=45.0, description="Largest tilt searched, degrees either way.")
    min_angle: float = Field(
        default=0.5, ge=0.0, le=45.0, description="Tilts smaller than this are left alone, degrees."
    )
    expand: bool = Field(default=True, description="Grow the canvas to keep the whole rotated image.")

    max_points: ClassVar[int] = 5_000  # ink cells the angle search projects (cost ~ points x angles)

    def estimate_angle(self, image: np.ndarray) -> float:
        """Tilt of the text in degrees, counter-clockwise positive (OpenCV's rotation sense)."""
        gray = to_gray(image, self.op)
        # Strokes, whatever the polarity and the background: pixels darker (black-hat) or brighter
        # (top-hat) than their surroundings over a window wider than a stroke. Large areas and
        # their edges (labels, panels, the crop's own border) give no response.
        side = int(np.clip(min(gray.shape) // 3, 9, 31)) | 1
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
        hat = np.maximum(
            cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel), cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel)
        )
        ink = (hat > otsu_level(hat)).astype(np.float32)
        count = int(np.count_nonzero(ink))
        if count < 10:
            return 0.0
        if count > self.max_points:
            # Pool the ink into coarser cells weighted by their ink share: no sampling noise
            # (a strided or random subset of the pixels makes false peaks), less resolution.
            factor = math.sqrt(self.max_points / count)
            size = (max(1, round(ink.shape[1] * factor)), max(1, round(ink.shape[0] * factor)))
            ink = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
        ys, xs = np.nonzero(ink)
        weights = ink[ys, xs].astype(np.float64)
        xs = xs - xs.mean()
        ys = ys - ys.mean()
        coarse = np.arange(-self.max_angle, self.max_angle + 1e-9, 0.5)
        best = _sharpest_projection(xs, ys, weights, coarse)
        fine = np.clip(best + np.arange(-0.5, 0.5 + 1e-9, 0.05), -self.max_angle, self.max_angle)
        return round(float(_sharpest_projection(xs, ys, weights, fine)), 2)

    def apply_and_report(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        image = check_image(image, self.op)
        angle = self.estimate_angle(image)
        if abs(angle) < max(self.min_angle, 1e-6):
            return image, {"angle": angle, "rotated": False}
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -angle, 1.0)  # undo a CCW tilt
        if self.expand:
            cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
            new_w = int(math.ceil(height * sin + width * cos))
            new_h = int(math.ceil(height * cos + width * sin))
            matrix[0, 2] += (new_w - width) / 2
            matrix[1, 2] += (new_h - height) / 2
            width, height = new_w, new_h
        fill = background_value(image)
        out = cv2.warpAffine(
            image,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=fill + (0,) * (4 - len(fill)),
        )
        return out, {"angle": angle, "rotated": True}

    def apply(self, image: np.ndarray) -> np.ndarray:
        return self.apply_and_report(image)[0]


def _sharpest_projection(xs: np.ndarray, ys: np.ndarray, weights: np.ndarray, angles_deg: np.ndarray) -> float:
    """The angle at which the weighted points' projection profile has the sharpest steps.

    For each angle the points are projected across text rows tilted counter-clockwise by it
    (y points down) into 1-pixel bins, each point split linearly between its two nearest bins
    (less quantisation noise than rounding). The score is the sum of squared differences of
    neighbouring bins (Postl's criterion): row tops and baselines make tall steps only when
    aligned with the bins. It locates the angle better than the bins' own sum of squares.
    """
    rad = np.deg2rad(angles_deg).astype(np.float32)
    across = np.multiply.outer(xs.astype(np.float32), np.sin(rad))
    across += np.multiply.outer(ys.astype(np.float32), np.cos(rad))
    across -= across.min()
    lower = across.astype(np.int64)  # floor: all values are >= 0
    upper_weight = (across - lower) * weights.astype(np.float32)[:, None]
    lower_weight = weights.astype(np.float32)[:, None] - upper_weight
    span = int(lower.max()) + 2
    lower += np.arange(len(angles_deg)) * span
    size = span * len(angles_deg)
    flat = lower.ravel()
    hist = np.bincount(flat, lower_weight.ravel(), size)
    hist[1:] += np.bincount(flat, upper_weight.ravel(), size)[:-1]
    scores = (np.diff(hist.reshape(len(angles_deg), span), axis=1) ** 2).sum(axis=1)
    return float(angles_deg[int(np.argmax(scores))])


class ResizePad(PreprocessOp):
    """Resize keeping the aspect ratio to fit ``width x height``, pad the rest. Gray or BGR in, same out.

    Shrinking uses area averaging (no aliasing), enlarging bilinear interpolation. The padding is
    the background value (lower median of the border, per channel) or a fixed gray level.
    """

    op: Literal["resize"] = Field(default="resize", description="Operation name: resize with padding.")
    width: int = Field(ge=1, le=8192, description="Output width in pixels.")
    height: int = Field(ge=1, le=8192, description="Output height in pixels.")
    align: Literal["center", "start"] = Field(
        default="center", description="Where the content sits: 'center', or 'start' (top-left, padding right/bottom)."
    )
    pad: Literal["background"] | int = Field(
        default="background", description="Padding: 'background' (estimated from the border) or a gray level 0..255."
    )
    upscale: bool = Field(default=True, description="Allow enlarging; when false, small images are only padded.")

    @field_validator("pad")
    @classmethod
    def _pad_is_gray_level(cls, value: str | int) -> str | int:
        if isinstance(value, int) and not 0 <= value <= 255:
            raise ValueError(f"pad must be 'background' or a gray level 0..255, got {value}")
        return value

    def geometry(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(new_h, new_w, top, left) of the resized content for an input of ``height x width``."""
        return resize_geometry(height, width, self.height, self.width, self.align, self.upscale)

    def fill_value(self, image: np.ndarray) -> tuple[int, ...]:
        """The padding value per channel for ``image``."""
        channels = 1 if image.ndim == 2 else image.shape[2]
        return background_value(image) if self.pad == "background" else (int(self.pad),) * channels

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image, self.op)
        new_h, new_w, top, left = self.geometry(*image.shape[:2])
        shrinking = new_h < image.shape[0] or new_w < image.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        canvas = np.empty((self.height, self.width) + image.shape[2:], np.uint8)
        fill = self.fill_value(image)
        canvas[...] = fill if image.ndim == 3 else fill[0]
        canvas[top : top + new_h, left : left + new_w] = resized
        return canvas


class Normalize(PreprocessOp):
    """Scale to [0, 1], subtract ``mean``, divide by ``std``. uint8 gray/BGR in, float32 same shape out.

    Must be the last step of a pipeline. One value applies to every channel; a list gives one
    per channel (in the image's channel order).
    """

    op: Literal["normalize"] = Field(default="normalize", description="Operation name: mean/std normalisation.")
    mean: float | tuple[float, ...] = Field(default=0.5, description="Subtracted after scaling to [0, 1].")
    std: float | tuple[float, ...] = Field(default=0.5, description="Divisor after subtracting mean; positive.")

    @field_validator("std")
    @classmethod
    def _std_is_positive(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = value if isinstance(value, tuple) else (value,)
        if not values or any(v <= 0 for v in values):
            raise ValueError(f"std must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _same_channel_count(self) -> Normalize:
        if isinstance(self.mean, tuple) and isinstance(self.std, tuple) and len(self.mean) != len(self.std):
            raise ValueError(f"mean ({len(self.mean)} values) and std ({len(self.std)} values) differ in length")
        return self

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) as float32 arrays of length ``channels``; ImageError on a length mismatch."""
        out = []
        for name in ("mean", "std"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,) * channels
            if len(values) != channels:
                raise ImageError(f"normalize: {name} has {len(values)} values for an image of {channels} channels")
            out.append(np.asarray(values, np.float32))
        return out[0], out[1]

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image, self.op)
        mean, std = self.per_channel(1 if image.ndim == 2 else image.shape[2])
        scaled = image.astype(np.float32) * np.float32(1 / 255)
        if image.ndim == 2:
            return (scaled - mean[0]) / std[0]
        return (scaled - mean) / std


Op = Annotated[
    Union[  # noqa: UP007 - a discriminated union reads better spelled out
        Gray,
        Invert,
        GaussianBlur,
        MedianBlur,
        Clahe,
        EqualizeHist,
        OtsuThreshold,
        AdaptiveThreshold,
        Morphology,
        Polarity,
        Deskew,
        ResizePad,
        Normalize,
    ],
    Field(discriminator="op"),
]
OP_CLASSES: Mapping[str, type[PreprocessOp]] = MappingProxyType(
    {
        cls.model_fields["op"].default: cls
        for cls in (
            Gray,
            Invert,
            GaussianBlur,
            MedianBlur,
            Clahe,
            EqualizeHist,
            OtsuThreshold,
            AdaptiveThreshold,
            Morphology,
            Polarity,
            Deskew,
            ResizePad,
            Normalize,
        )
    }
)


# --------------------------------------------------------------------------------------------
# Pipelines.


class Pipeline(BaseModel):
    """Operations applied in order. Build one with :func:`parse_pipeline` or :func:`preset`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ops: tuple[Op, ...] = Field(default=(), description="The operations, applied first to last.")

    @model_validator(mode="after")
    def _normalize_is_last(self) -> Pipeline:
        for i, op in enumerate(self.ops[:-1]):
            if isinstance(op, Normalize):
                raise ValueError(f"normalize (step {i + 1}) must be the last step: later steps need uint8 images")
        return self

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Run every op on ``image`` (uint8 gray or BGR); an empty pipeline returns it unchanged."""
        for op in self.ops:
            image = op.apply(image)
        return image

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.apply(image)

    def trace(self, image: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """``apply`` plus a dict per step: its spec, output shape and decisions (polarity, deskew angle)."""
        steps = []
        for op in self.ops:
            image, report = op.apply_and_report(image)
            steps.append({"step": op.spec(), "shape": tuple(image.shape), **report})
        return image, steps

    def spec(self) -> str:
        """The pipeline as a string that :func:`parse_pipeline` reads back (``'none'`` when empty)."""
        return "|".join(op.spec() for op in self.ops) or "none"

    def __str__(self) -> str:
        return self.spec()


def _parse_step_string(step: str) -> dict[str, Any]:
    """``'clahe:clip=2.0,tile=8'`` -> ``{'op': 'clahe', 'clip': 2.0, 'tile': 8}``.

    Values are read as YAML scalars; ``a/b/c`` is a list (per-channel mean and std).
    """
    name, _, params = step.partition(":")
    out: dict[str, Any] = {"op": name.strip()}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {item!r} is not key=value")
        if key.strip() == "op":
            raise ValueError("'op' is the operation name, not a parameter")
        values = [yaml.safe_load(v) if v.strip() else "" for v in value.split("/")]
        out[key.strip()] = values if len(values) > 1 else values[0]
    return out


def _error_lines(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in OP_CLASSES))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _expand_steps(items: Sequence[Any], where: str) -> list[PreprocessOp]:
    ops: list[PreprocessOp] = []
    for index, item in enumerate(items, 1):
        label = f"{where}step {index} ({item!r})"
        if isinstance(item, PreprocessOp):
            ops.append(item)
            continue
        if isinstance(item, str):
            if item.strip() in _PRESET_SPECS:
                ops.extend(preset(item.strip()).ops)
                continue
            try:
                item = _parse_step_string(item)
            except ValueError as exc:
                raise PipelineError(f"{label}: {exc}") from None
        if not isinstance(item, Mapping):
            raise PipelineError(f"{label}: expected a step string or a mapping with 'op', got {type(item).__name__}")
        name = item.get("op")
        if name not in OP_CLASSES:
            raise PipelineError(
                f"{label}: unknown operation {name!r}; operations: {', '.join(OP_CLASSES)}; "
                f"presets: {', '.join(_PRESET_SPECS)}"
            )
        try:
            ops.append(OP_CLASSES[name].model_validate(dict(item)))
        except ValidationError as exc:
            raise PipelineError(f"{label}: {name}: {_error_lines(exc)}") from None
    return ops


PipelineSpec = Union[Pipeline, str, Path, Sequence[Any], Mapping[str, Any]]  # noqa: UP007


def parse_pipeline(spec: PipelineSpec) -> Pipeline:
    """Build a :class:`Pipeline` from any of its spellings; PipelineError names the bad step and field.

    * a string of steps joined by ``|``, each ``name`` or ``name:key=value,key=value`` (values
      read as YAML scalars, ``a/b/c`` a list), e.g. ``"gray|clahe:clip=2.0|otsu"``; a step may
      be a preset name, which expands to its steps; ``""`` and ``"none"`` are the empty pipeline;
    * YAML text (a list of steps or a mapping with ``ops``) or a :class:`~pathlib.Path` to a YAML file;
    * a list whose items are step strings, preset names, ops or dicts like ``{"op": "median", "ksize": 3}``;
    * a mapping ``{"ops": [...]}`` or a single step mapping; or a Pipeline (returned as is).
    """
    return _parse(spec, "")


def _parse(spec: PipelineSpec, where: str) -> Pipeline:
    if isinstance(spec, Pipeline):
        return spec
    if isinstance(spec, Path):
        try:
            loaded = yaml.safe_load(spec.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PipelineError(f"{spec}: cannot read the pipeline ({exc})") from None
        return _parse(loaded if loaded is not None else "", f"{spec}: ")
    if isinstance(spec, str):
        text = spec.strip()
        if "\n" in text or text[:1] in ("-", "[", "{"):
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise PipelineError(f"{where}pipeline YAML is malformed: {exc}") from None
            return _parse(loaded if loaded is not None else "", where)
        steps: Sequence[Any] = [s.strip() for s in text.split("|")] if text else []
        if any(not s for s in steps):
            raise PipelineError(f"{where}pipeline {spec!r} has an empty step")
    elif isinstance(spec, Mapping):
        if "ops" in spec:
            if set(spec) != {"ops"} or not isinstance(spec["ops"], (list, tuple)):
                raise PipelineError(f"{where}a pipeline mapping holds only 'ops', a list of steps; got {dict(spec)}")
            steps = spec["ops"]
        else:
            steps = [spec]
    elif isinstance(spec, Sequence):
        steps = spec
    else:
        raise PipelineError(f"{where}cannot build a pipeline from {type(spec).__name__}")
    ops = _expand_steps(steps, where)
    try:
        return Pipeline(ops=tuple(ops))
    except ValidationError as exc:
        raise PipelineError(f"{where}{_error_lines(exc)}") from None


# Presets: named pipelines for common print and light conditions. Each ends in gray uint8 so a
# recogniser's own resize/normalisation follows; all but low_contrast make text dark on light.
_PRESET_SPECS: Mapping[str, str] = MappingProxyType(
    {
        "none": "",
        # Dot-matrix / inkjet prints: join the dots into strokes (close on the dark ink), then drop speckle.
        "dotmatrix": "gray|polarity|morph:mode=close,ksize=3|median:ksize=3",
        # Faint prints, glare: local contrast boost.
        "low_contrast": "gray|clahe:clip=2.0,tile=8",
        # Even light, clear print: global black/white.
        "binarize": "gray|polarity|otsu",
        # Shadows and gradients across the code: local threshold.
        "uneven_light": "gray|polarity|adaptive:method=mean,block=31,c=10",
    }
)
assert not set(_PRESET_SPECS) & set(OP_CLASSES), "preset names must differ from operation names"

PRESETS: Mapping[str, Pipeline] = MappingProxyType(
    {
        name: Pipeline(ops=tuple(_expand_steps(spec.split("|") if spec else [], f"preset {name}: ")))
        for name, spec in _PRESET_SPECS.items()
    }
)


def preset(name: str) -> Pipeline:
    """The named preset pipeline; PipelineError listing the names when it does not exist."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PipelineError(f"unknown preprocessing preset {name!r}; presets: {', '.join(PRESETS)}") from None
