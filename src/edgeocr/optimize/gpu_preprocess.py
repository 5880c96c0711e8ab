"""The preprocessing operations of ``edgeocr.core.preprocess`` in torch, for CUDA (or CPU).

:func:`to_torch_pipeline` turns a :class:`~edgeocr.core.preprocess.Pipeline` into a callable on
torch tensors laid out like the numpy images (uint8 ``[H, W]`` or ``[H, W, C]``, BGR), so that
frames already on the GPU (decoded there, or batched for a detector) need not go back to the
host to be cleaned. Each op reproduces OpenCV's arithmetic and borders:

* exact (bit for bit): gray (OpenCV's fixed-point weights, which changed between 4.x and 5.x,
  are read off the installed OpenCV once), invert, Gaussian blur (OpenCV's uint8 fixed-point
  path: 8-bit error-diffused coefficients, integer sums, half-up rounding, reflect-101
  border), median (replicated border), histogram equalisation (float32 LUT as OpenCV), Otsu
  (same criterion; a different level is possible only inside a run of empty histogram bins,
  where the binary output is the same), adaptive threshold ``mean`` (integer box mean rounded
  as OpenCV, replicated border), morphology (border ignored), polarity, normalise;
* resize: the same geometry and OpenCV's sampling, as two small interpolation matrices (two
  matmuls): area averaging with fractional pixel overlaps when shrinking (exact on the frames
  tested), half-pixel bilinear when enlarging, which may differ by one gray level because
  OpenCV's INTER_LINEAR on uint8 uses 11-bit fixed-point weights with intermediate
  truncation, while this uses float32 and rounds once;
* through OpenCV on the host (a copy each way, noted in :attr:`TorchPipeline.fallbacks`):
  CLAHE (tile histograms with clipping and bilinear tile blending are not worth a kernel for
  line crops), deskew (its angle search is a histogram of a few thousand points) and adaptive
  threshold ``gaussian``.

Only ``optimize`` (with ``models`` and ``train``) may import torch; inference installs do not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgeocr.core.errors import ImageError
from edgeocr.core.preprocess import (
    AdaptiveThreshold,
    Clahe,
    Deskew,
    EqualizeHist,
    GaussianBlur,
    Gray,
    Invert,
    MedianBlur,
    Morphology,
    Normalize,
    OtsuThreshold,
    Pipeline,
    Polarity,
    PreprocessOp,
    ResizePad,
    parse_pipeline,
)

__all__ = ["NATIVE_OPS", "TorchPipeline", "to_torch_pipeline"]

TorchFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Layout helpers: images are [H, W] or [H, W, C] uint8 like numpy; filters work on [1, C, H, W].


def _check(image: torch.Tensor, op: str) -> torch.Tensor:
    if image.dtype != torch.uint8:
        raise ImageError(f"{op}: expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ImageError(f"{op}: expected a gray [H, W] or BGR [H, W, 3] image, got shape {tuple(image.shape)}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"{op}: image is empty (shape {tuple(image.shape)})")
    return image


def _to_nchw(image: torch.Tensor) -> torch.Tensor:
    """float32 ``[1, C, H, W]`` view of an ``[H, W]`` or ``[H, W, C]`` image."""
    if image.ndim == 2:
        return image[None, None].float()
    return image.permute(2, 0, 1)[None].float()


def _from_nchw(tensor: torch.Tensor, like_ndim: int) -> torch.Tensor:
    """Round, clamp and lay a float ``[1, C, H, W]`` back out as uint8 ``[H, W]``/``[H, W, C]``."""
    out = tensor.round().clamp_(0, 255).to(torch.uint8)[0]
    return out[0] if like_ndim == 2 else out.permute(1, 2, 0).contiguous()


@functools.cache
def _gray_weights() -> tuple[int, int, int, int]:
    """OpenCV's fixed-point BGR->gray weights and shift, checked against the installed OpenCV.

    Candidates: the 15-bit set (3735, 19235, 9798) measured on OpenCV 5.0 (exact on all 2**24
    colours) and the 14-bit set (1868, 9617, 4899) of OpenCV 4.x; the one that reproduces
    cv2.cvtColor on a sample of colours is kept (the parity test fails if neither does).
    """
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, (64, 256, 3), dtype=np.uint8)
    expected = cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY).astype(np.int64)
    b, g, r = (sample[..., i].astype(np.int64) for i in range(3))
    candidates = ((3735, 19235, 9798, 15), (1868, 9617, 4899, 14))
    mismatches = []
    for wb, wg, wr, shift in candidates:
        got = (b * wb + g * wg + r * wr + (1 << (shift - 1))) >> shift
        mismatches.append(int(np.count_nonzero(got != expected)))
    return candidates[int(np.argmin(mismatches))]


def _gray(image: torch.Tensor) -> torch.Tensor:
    image = _check(image, "gray")
    if image.ndim == 2:
        return image
    wb, wg, wr, shift = _gray_weights()
    bgr = image[..., :3].to(torch.int32)
    y = bgr[..., 0] * wb + bgr[..., 1] * wg + bgr[..., 2] * wr + (1 << (shift - 1))
    return (y >> shift).to(torch.uint8)


def _histogram(gray: torch.Tensor) -> torch.Tensor:
    return torch.bincount(gray.reshape(-1).to(torch.int64), minlength=256)


# --------------------------------------------------------------------------------------------
# Operations.


def _invert(image: torch.Tensor) -> torch.Tensor:
    return 255 - _check(image, "invert")


_SMALL_GAUSSIANS = {  # OpenCV's fixed kernels for sigma <= 0 (all exact in 1/256)
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def _fixed_point_gaussian(ksize: int, sigma: float) -> list[int]:
    """OpenCV's 8-bit Gaussian coefficients (units of 1/256) for uint8 images.

    The float kernel is quantised from the ends inwards, carrying each rounding error to the
    next coefficient, and the centre takes what is left so the sum is exactly 256.
    """
    if sigma <= 0 and ksize in _SMALL_GAUSSIANS:
        kernel = np.array(_SMALL_GAUSSIANS[ksize])
    else:
        sigma = sigma if sigma > 0 else ksize * 0.15 + 0.35  # = 0.3 * ((ksize - 1) / 2 - 1) + 0.8
        x = np.arange(1 - ksize, ksize, 2, dtype=np.float64)  # twice the distance to the centre
        kernel = np.exp(x * x * (-0.125 / (sigma * sigma)))
        kernel /= kernel.sum()
    out = [0] * ksize
    carried = 0.0
    for i in range(ksize // 2):
        wanted = kernel[i] * 256 + carried
        out[i] = out[ksize - 1 - i] = int(np.rint(wanted))
        carried = wanted - out[i]
    out[ksize // 2] = 256 - 2 * sum(out[: ksize // 2])
    return out


def _border_index(size: int, pad: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source indices of a row/column padded by ``pad`` on both sides, as OpenCV's borderInterpolate.

    ``reflect101`` mirrors without repeating the edge (gfedcb|abcdefgh|gfedcba), however small
    the image; ``replicate`` repeats it (aaaaaa|abcdefgh|hhhhhhh).
    """
    index = np.arange(-pad, size + pad)
    if mode == "replicate" or size == 1:
        index = np.clip(index, 0, size - 1)
    else:
        period = 2 * (size - 1)
        index = index % period
        index = np.where(index >= size, period - index, index)
    return torch.from_numpy(index).to(device)


def _pad(planes: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Pad the last two dimensions of any-dtype ``planes`` by ``pad`` pixels with an OpenCV border."""
    height, width = planes.shape[-2:]
    rows = _border_index(height, pad, mode, planes.device)
    cols = _border_index(width, pad, mode, planes.device)
    return planes.index_select(-2, rows).index_select(-1, cols)


def _planes(image: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` planes of an ``[H, W]`` or ``[H, W, C]`` image (contiguous: the shifted
    slices that follow run several times faster on planes than on interleaved channels)."""
    return image[None] if image.ndim == 2 else image.permute(2, 0, 1).contiguous()


def _unplanes(planes: torch.Tensor, like_ndim: int) -> torch.Tensor:
    return planes[0] if like_ndim == 2 else planes.permute(1, 2, 0).contiguous()


def _gaussian(op: GaussianBlur) -> TorchFn:
    coefficients = _fixed_point_gaussian(op.ksize, op.sigma)
    pad = op.ksize // 2

    def run(image: torch.Tensor) -> torch.Tensor:
        # Integer arithmetic as OpenCV's uint8 path: rows in 8.8 fixed point, columns in 16.16,
        # rounded half up. Shifted slices in int32 stay exact on every device (no TF32 convs).
        image = _check(image, op.op)
        x = _pad(_planes(image), pad, "reflect101").to(torch.int32)
        height, width = image.shape[:2]
        rows = sum(c * x[:, :, j : j + width] for j, c in enumerate(coefficients) if c)
        cols = sum(c * rows[:, j : j + height] for j, c in enumerate(coefficients) if c)
        return _unplanes(((cols + (1 << 15)) >> 16).to(torch.uint8), image.ndim)

    return run


def _sort2(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.minimum(a, b), torch.maximum(a, b)


def _median3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def _median_3x3(padded: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """3x3 median of ``[C, H+2, W+2]`` with min/max only: sort each column of 3, then the median
    of 9 is the median of (largest of the column minima, median of the column medians, smallest
    of the column maxima). Column sorts are shared by neighbouring windows.
    """
    top, mid, bottom = padded[:, :-2], padded[:, 1:-1], padded[:, 2:]
    low, high = _sort2(top, mid)
    high, hi2 = _sort2(high, bottom)
    low, middle = _sort2(low, high)  # per column: low <= middle <= hi2
    cols = [slice(0, width), slice(1, width + 1), slice(2, width + 2)]
    max_low = torch.maximum(torch.maximum(low[:, :, cols[0]], low[:, :, cols[1]]), low[:, :, cols[2]])
    med_mid = _median3(middle[:, :, cols[0]], middle[:, :, cols[1]], middle[:, :, cols[2]])
    min_high = torch.minimum(torch.minimum(hi2[:, :, cols[0]], hi2[:, :, cols[1]]), hi2[:, :, cols[2]])
    return _median3(max_low, med_mid, min_high)


def _median_by_counting(padded: torch.Tensor, ksize: int, height: int, width: int) -> torch.Tensor:
    """Median of each ``ksize x ksize`` window of uint8 ``[C, H+k-1, W+k-1]``, bit by bit.

    The median is the largest value v with at most ``(k*k - 1) / 2`` window pixels below it;
    it is built from the top bit down, counting with shifted slices (8 * k*k compares, no
    ``k*k``-fold copy of the image as unfold + median makes, and several times faster).
    """
    rank = (ksize * ksize - 1) // 2
    result = torch.zeros((padded.shape[0], height, width), dtype=torch.uint8, device=padded.device)
    count = torch.empty_like(result)
    for bit in (128, 64, 32, 16, 8, 4, 2, 1):
        candidate = result | bit
        count.zero_()
        for dy in range(ksize):
            for dx in range(ksize):
                count += padded[:, dy : dy + height, dx : dx + width] < candidate
        result = torch.where(count <= rank, candidate, result)
    return result


def _median(op: MedianBlur) -> TorchFn:
    pad = op.ksize // 2

    def run(image: torch.Tensor) -> torch.Tensor:
        image = _check(image, op.op)
        padded = _pad(_planes(image), pad, "replicate")  # OpenCV's medianBlur border
        if op.ksize == 3:
            return _unplanes(_median_3x3(padded, *image.shape[:2]), image.ndim)
        if op.ksize <= 9:
            return _unplanes(_median_by_counting(padded, op.ksize, *image.shape[:2]), image.ndim)
        windows = padded.unfold(1, op.ksize, 1).unfold(2, op.ksize, 1)  # [C, H, W, k, k]
        out = windows.reshape(*windows.shape[:3], -1).median(dim=-1).values
        return _unplanes(out, image.ndim)

    return run


def _equalize(image: torch.Tensor) -> torch.Tensor:
    gray = _gray(image)
    hist = _histogram(gray)
    nonzero = torch.nonzero(hist)
    first = int(nonzero[0, 0])
    total = gray.numel()
    if int(hist[first]) == total:  # one gray level: OpenCV maps it to itself
        return gray.clone()
    # As OpenCV: lut[i] = round((cdf[i] - hist[first]) * (255 / (total - hist[first]))) in float32.
    scale = torch.tensor(255.0 / (total - int(hist[first])), dtype=torch.float32, device=gray.device)
    cdf = torch.cumsum(hist, 0) - hist[first]
    lut = (cdf.to(torch.float32) * scale).round().clamp_(0, 255).to(torch.uint8)
    lut[:first] = 0
    return lut[gray.to(torch.int64)]


def _otsu_level(gray: torch.Tensor) -> torch.Tensor:
    """Otsu's level as a 0-d int64 tensor (stays on the device: no sync)."""
    p = _histogram(gray).to(torch.float64) / gray.numel()
    levels = torch.arange(256, dtype=torch.float64, device=gray.device)
    q1 = torch.cumsum(p, 0)
    m1 = torch.cumsum(p * levels, 0)
    q2 = 1.0 - q1
    mu = m1[-1]
    # Between-class variance q1*q2*(mu1-mu2)^2 = (mu*q1 - m1)^2 / (q1*q2), where both classes exist.
    eps = float(np.finfo(np.float32).eps)  # OpenCV skips levels with a class below FLT_EPSILON
    valid = (torch.minimum(q1, q2) >= eps) & (torch.maximum(q1, q2) <= 1.0 - eps)
    sigma = torch.where(valid, (mu * q1 - m1) ** 2 / torch.where(valid, q1 * q2, 1.0), 0.0)
    best = torch.argmax(sigma)  # first maximum, as OpenCV's strict '>'
    return torch.where(sigma[best] > 0, best, torch.zeros_like(best))


def _otsu(op: OtsuThreshold) -> TorchFn:
    def run(image: torch.Tensor) -> torch.Tensor:
        gray = _gray(image)
        above = gray > _otsu_level(gray)
        return ((~above if op.invert else above).to(torch.uint8)) * 255

    return run


def _adaptive_mean(op: AdaptiveThreshold) -> TorchFn:
    k = op.block
    pad = k // 2
    area = k * k
    # OpenCV compares src - mean with an integer delta: ceil(c) for BINARY, floor(c) for BINARY_INV.
    delta = int(np.floor(op.c)) if op.invert else int(np.ceil(op.c))

    def run(image: torch.Tensor) -> torch.Tensor:
        gray = _gray(image)
        # Box sums as two running-sum differences (rows, then columns) on the replicated-border
        # frame: exact integers; int32 holds 255 * block * (H + block) for frames up to 8k.
        padded = _pad(gray, pad, "replicate").to(torch.int32)
        along_rows = F.pad(padded.cumsum(1, dtype=torch.int32), (1, 0))
        rows = along_rows[:, k:] - along_rows[:, :-k]
        along_cols = F.pad(rows.cumsum(0, dtype=torch.int32), (0, 0, 1, 0))
        sums = along_cols[k:] - along_cols[:-k]
        mean = torch.div(2 * sums + area, 2 * area, rounding_mode="floor")
        diff = gray.to(torch.int32) - mean
        keep = diff <= -delta if op.invert else diff > -delta
        return keep.to(torch.uint8) * 255

    return run


def _morphology(op: Morphology) -> TorchFn:
    kernel = op.kernel()
    kh, kw = kernel.shape
    ay, ax = kh // 2, kw // 2  # OpenCV's default anchor
    offsets = [(int(dy), int(dx)) for dy, dx in np.argwhere(kernel)]
    rect = bool(kernel.all())
    mode = op.light_mode()

    def extreme(planes: torch.Tensor, grow: bool) -> torch.Tensor:
        # dilate = max over the kernel, erode = min, on uint8 [C, H, W]. The border is padded with
        # 0 for max and 255 for min, which never changes the result: outside pixels are ignored
        # as in OpenCV.
        height, width = planes.shape[1:]
        padded = F.pad(planes, (ax, kw - 1 - ax, ay, kh - 1 - ay), value=0 if grow else 255)
        reduce = torch.maximum if grow else torch.minimum
        if rect:  # separable: along the rows, then the columns
            rows = padded[:, :, 0:width]
            for dx in range(1, kw):
                rows = reduce(rows, padded[:, :, dx : dx + width])
            out = rows[:, 0:height]
            for dy in range(1, kh):
                out = reduce(out, rows[:, dy : dy + height])
            return out
        out = None
        for dy, dx in offsets:
            window = padded[:, dy : dy + height, dx : dx + width]
            out = window if out is None else reduce(out, window)
        return out if out is not None else planes

    def run(image: torch.Tensor) -> torch.Tensor:
        image = _check(image, op.op)
        planes = _planes(image)
        steps = {"dilate": [True], "erode": [False], "close": [True, False], "open": [False, True]}[mode]
        for grow in steps:
            for _ in range(op.iterations):
                planes = extreme(planes, grow)
        return _unplanes(planes.contiguous(), image.ndim)

    return run


def _light_background(gray: torch.Tensor, level: torch.Tensor) -> bool:
    border = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    bright = int((border > level).sum())
    if 2 * bright != border.numel():
        return 2 * bright > border.numel()
    return 2 * int((gray > level).sum()) >= gray.numel()


def _polarity(op: Polarity) -> TorchFn:
    def run(image: torch.Tensor) -> torch.Tensor:
        image = _check(image, op.op)
        gray = _gray(image)
        light_on_dark = not _light_background(gray, _otsu_level(gray))
        return 255 - image if light_on_dark != (op.target == "light_on_dark") else image

    return run


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(size_in: int, size_out: int, area: bool, device: torch.device) -> torch.Tensor:
    """``[size_out, size_in]`` weights reproducing cv2.resize along one axis.

    ``area``: each output pixel averages the input interval it covers, with fractional weights at
    both ends (INTER_AREA when shrinking). Otherwise half-pixel bilinear with edges clamped
    (INTER_LINEAR).
    """
    scale = size_in / size_out
    weights = np.zeros((size_out, size_in), np.float64)
    if area:
        for i in range(size_out):
            start, end = i * scale, (i + 1) * scale
            for j in range(int(np.floor(start)), min(int(np.ceil(end)), size_in)):
                weights[i, j] = min(end, j + 1) - max(start, j)
        weights /= weights.sum(axis=1, keepdims=True)
    else:
        src = (np.arange(size_out) + 0.5) * scale - 0.5
        left = np.floor(src).astype(np.int64)
        frac = src - left
        frac[left < 0] = 0.0
        left = np.clip(left, 0, size_in - 1)
        right = np.clip(left + 1, 0, size_in - 1)
        rows = np.arange(size_out)
        np.add.at(weights, (rows, left), 1.0 - frac)
        np.add.at(weights, (rows, right), frac)
    return torch.from_numpy(weights.astype(np.float32)).to(device)


def _resize(op: ResizePad) -> TorchFn:
    def run(image: torch.Tensor) -> torch.Tensor:
        image = _check(image, op.op)
        height, width = image.shape[:2]
        new_h, new_w, top, left = op.geometry(height, width)
        shrinking = new_h < height or new_w < width
        wy = _interpolation_matrix(height, new_h, shrinking, image.device)
        wx = _interpolation_matrix(width, new_w, shrinking, image.device)
        x = _to_nchw(image)
        resized = _from_nchw(wy @ x @ wx.T, image.ndim)
        if op.pad == "background":
            fill = _background(image)
        else:
            fill = torch.full(
                (1 if image.ndim == 2 else image.shape[2],), op.pad, dtype=torch.uint8, device=image.device
            )
        canvas = (
            fill.expand(op.height, op.width, -1).clone()
            if image.ndim == 3
            else fill[0].expand(op.height, op.width).clone()
        )
        canvas[top : top + new_h, left : left + new_w] = resized
        return canvas

    return run


def _background(image: torch.Tensor) -> torch.Tensor:
    """Per-channel lower median of the border pixels, ``[C]`` uint8 (as core's background_value)."""
    border = torch.cat([image[0], image[-1], image[:, 0], image[:, -1]])
    border = border.reshape(border.shape[0], -1)
    return border.median(dim=0).values  # torch's median is the lower one for an even count


def _normalize(op: Normalize) -> TorchFn:
    def run(image: torch.Tensor) -> torch.Tensor:
        image = _check(image, op.op)
        mean, std = op.per_channel(1 if image.ndim == 2 else image.shape[2])
        x = image.to(torch.float32) * np.float32(1 / 255)
        mean_t = torch.from_numpy(mean).to(image.device)
        std_t = torch.from_numpy(std).to(image.device)
        if image.ndim == 2:
            return (x - mean_t[0]) / std_t[0]
        return (x - mean_t) / std_t

    return run


def _through_opencv(op: PreprocessOp) -> TorchFn:
    def run(image: torch.Tensor) -> torch.Tensor:
        out = op.apply(image.cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(out)).to(image.device)

    return run


def _torch_fn(op: PreprocessOp) -> TorchFn | None:
    """The torch implementation of ``op``, or None when it runs through OpenCV."""
    if isinstance(op, Gray):
        return _gray
    if isinstance(op, Invert):
        return _invert
    if isinstance(op, GaussianBlur):
        return _gaussian(op)
    if isinstance(op, MedianBlur):
        return _median(op)
    if isinstance(op, EqualizeHist):
        return _equalize
    if isinstance(op, OtsuThreshold):
        return _otsu(op)
    if isinstance(op, AdaptiveThreshold) and op.method == "mean":
        return _adaptive_mean(op)
    if isinstance(op, Morphology):
        return _morphology(op)
    if isinstance(op, Polarity):
        return _polarity(op)
    if isinstance(op, ResizePad):
        return _resize(op)
    if isinstance(op, Normalize):
        return _normalize(op)
    assert isinstance(op, (Clahe, Deskew, AdaptiveThreshold)), f"no torch mapping decided for {op.op}"
    return None


#: Operations with a torch implementation; the others (clahe, deskew, adaptive gaussian) use OpenCV.
NATIVE_OPS = frozenset(
    {"gray", "invert", "gaussian", "median", "equalize", "otsu", "adaptive", "morph", "polarity", "resize", "normalize"}
)


@dataclass(frozen=True)
class TorchStep:
    """One pipeline step on tensors: the op, its function, and whether it runs in torch."""

    op: PreprocessOp
    fn: TorchFn
    native: bool


class TorchPipeline:
    """A :class:`Pipeline` on torch tensors of one device; call it on a tensor or numpy image."""

    def __init__(self, pipeline: Pipeline, device: torch.device) -> None:
        self.pipeline = pipeline
        self.device = device
        steps = []
        for op in pipeline.ops:
            fn = _torch_fn(op)
            steps.append(TorchStep(op, fn if fn is not None else _through_opencv(op), fn is not None))
        self.steps: tuple[TorchStep, ...] = tuple(steps)

    @property
    def fallbacks(self) -> list[str]:
        """Specs of the steps that run through OpenCV on the host (a copy to and from the device each)."""
        return [step.op.spec() for step in self.steps if not step.native]

    def __call__(self, image: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Run the pipeline; numpy input is copied to the device first. Returns a tensor on the device."""
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        image = image.to(self.device)
        for step in self.steps:
            image = step.fn(image)
        return image

    def numpy(self, image: torch.Tensor | np.ndarray) -> np.ndarray:
        """Like calling it, with the result copied back to a numpy array."""
        return self(image).cpu().numpy()

    def __repr__(self) -> str:
        return f"TorchPipeline({self.pipeline.spec()!r}, device={self.device}, fallbacks={self.fallbacks})"


def to_torch_pipeline(pipeline: Pipeline | Any, device: torch.device | str | None = None) -> TorchPipeline:
    """``pipeline`` (a Pipeline or any spec :func:`parse_pipeline` reads) on ``device``.

    ``device`` defaults to CUDA when available, else CPU.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return TorchPipeline(parse_pipeline(pipeline), torch.device(device))
