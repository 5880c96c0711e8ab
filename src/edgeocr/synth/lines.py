"""Line crops: one printed code line, as a text detector would cut it out of a camera frame."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeocr.synth.capture import seeded, warp_with_points
from edgeocr.synth.fonts import FontLibrary
from edgeocr.synth.generator import Synthesizer
from edgeocr.synth.processes import apply_print, render_text_mask, sample_style, to_uint8
from edgeocr.synth.surfaces import cylinder_warp, make_surface
from edgeocr.synth.templates import Catalogue


class LineSynthConfig(BaseModel):
    """Knobs of the line-crop generator; defaults give the shipped training distribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    anchor_date: dt.date = Field(default=dt.date(2026, 1, 1), description="Dates are drawn around this day.")
    cap_height: tuple[int, int] = Field(default=(12, 34), description="Capital height in pixels (min, max).")
    cylinder_p: float = Field(default=0.15, ge=0, le=1, description="Probability of a cylindrical warp.")
    capture_p: float = Field(default=0.9, ge=0, le=1, description="Probability of camera effects at all.")
    margin: tuple[float, float] = Field(default=(0.1, 0.6), description="Crop margin, in cap heights.")
    wide_margin_p: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Probability, per side, of a wide margin instead: crops cut by hand or by a generous "
        "detector leave a lot of bare surface, which a model that never saw it reads as extra characters.",
    )
    wide_margin: tuple[float, float] = Field(default=(0.6, 1.6), description="Wide crop margin, in cap heights.")
    min_contrast: float = Field(
        default=28.0,
        ge=0,
        description="Least gray-level difference between ink and surface (medians) as printed; a sample below "
        "it is drawn again, so that labels never describe text nobody could read.",
    )
    min_std: float = Field(
        default=8.0, ge=0, description="Least gray-level standard deviation of the final crop (same reason)."
    )
    min_local_contrast: float = Field(
        default=10.0,
        ge=0,
        description="Least ink-to-background contrast (gray levels) of every stretch of the final crop, a cap "
        "height long: glare, uneven light and washed-out print can erase part of a line after it was printed "
        "legibly, and a label must not name characters that are gone.",
    )
    max_attempts: int = Field(default=8, ge=1, description="Draws per sample before keeping an illegible one.")


@dataclass(frozen=True)
class LineSample:
    image: np.ndarray  # uint8 BGR
    text: str
    category: str
    template: str
    process: str
    surface: str
    vertical: bool


def ink_contrast(image: np.ndarray, alpha: np.ndarray) -> float:
    """Gray-level difference between the medians of inked (alpha > 0.5) and bare (alpha < 0.05) pixels."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    ink, bare = gray[alpha > 0.5], gray[alpha < 0.05]
    if ink.size == 0 or bare.size == 0:
        return 0.0
    return abs(float(np.median(ink)) - float(np.median(bare)))


class LineSynthesizer(Synthesizer):
    """Deterministic line-crop generator: ``sample(i)`` depends only on (seed, i)."""

    config: LineSynthConfig

    def __init__(
        self, catalogue: Catalogue, fonts: FontLibrary, seed: int, config: LineSynthConfig | None = None
    ) -> None:
        super().__init__(catalogue, fonts, seed, config or LineSynthConfig())

    def sample(self, index: int) -> LineSample:
        """Sample ``index``: drawn again (same generator, so still deterministic) while illegible."""
        rng = np.random.default_rng([self.seed, int(index), 0x11AE])
        for _ in range(self.config.max_attempts - 1):
            sample = self._draw(rng)
            if sample is not None:
                return sample
        return self._draw(rng, check=False)  # type: ignore[return-value]

    def _draw(self, rng: np.random.Generator, check: bool = True) -> LineSample | None:
        cfg = self.config
        template = self.catalogue.pick(rng)
        lines = template.sample(rng, self.context)
        text = lines[int(rng.integers(0, len(lines)))]
        vertical = bool(rng.random() < template.spec.vertical)
        cap = int(rng.integers(cfg.cap_height[0], cfg.cap_height[1] + 1))
        style = sample_style([text], template.spec.processes, self.fonts, rng, cap)
        alpha = render_text_mask(text, style, cap, rng, vertical=vertical)

        # Print on a surface larger than the text by the widest crop margin (geometric effects
        # grow the canvas to fit, so they never cut the text); only as large as this crop needs,
        # since the surface's cost grows with its area.
        margins = self._margins(rng) * cap  # left, top, right, bottom
        pad = int(margins.max()) + 2
        th, tw = alpha.shape
        h, w = th + 2 * pad, tw + 2 * pad
        full_alpha = np.zeros((h, w), dtype=np.float32)
        full_alpha[pad : pad + th, pad : pad + tw] = alpha
        surface = make_surface(style.surface, h, w, rng, self.bank)
        image = to_uint8(apply_print(surface, full_alpha, style, rng, self.bank, cap))
        if check and ink_contrast(image, full_alpha) < cfg.min_contrast:
            return None
        # The ink mask travels with the image through every geometric effect: the crop is cut
        # around the ink where it ended up (a cylinder spreads the middle of the print outwards, so
        # the box as printed would clip its ends), and legibility is judged on the final crop.
        ink = np.clip(full_alpha * 255.0, 0, 255).astype(np.uint8)
        if not vertical and rng.random() < cfg.cylinder_p:
            image, ink = cylinder_warp(image, rng, ink)
        if rng.random() < cfg.capture_p:
            warped, _ = warp_with_points(np.dstack([image, ink]), np.zeros((0, 2), np.float32), rng)
            image, ink = np.ascontiguousarray(warped[..., :3]), np.ascontiguousarray(warped[..., 3])
        box = ink_box(ink)
        if box is None:
            return None
        image, ink = self._crop(image, ink, box, margins)
        if rng.random() < cfg.capture_p:
            image = seeded(self.photometric, rng)(image=image)["image"]
        if check and not self._legible(image, ink, cap, vertical):
            return None
        return LineSample(
            image=image,
            text=text,
            category=template.spec.category,
            template=template.spec.name,
            process=style.process,
            surface=style.surface,
            vertical=vertical,
        )

    def _margins(self, rng: np.random.Generator) -> np.ndarray:
        """Crop margins (left, top, right, bottom) in cap heights: uneven, as detectors cut, and now
        and then wide (see ``wide_margin_p``)."""
        cfg = self.config
        wide = rng.random(4) < cfg.wide_margin_p
        return np.where(wide, rng.uniform(*cfg.wide_margin, 4), rng.uniform(*cfg.margin, 4))

    @staticmethod
    def _crop(
        image: np.ndarray, ink: np.ndarray, box: np.ndarray, margins: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned crop around the text box with the given margins in pixels."""
        (x0, y0), (x1, y1) = box
        h, w = image.shape[:2]
        left, top = max(int(x0 - margins[0]), 0), max(int(y0 - margins[1]), 0)
        right, bottom = min(int(np.ceil(x1 + margins[2])), w), min(int(np.ceil(y1 + margins[3])), h)
        return (np.ascontiguousarray(image[top:bottom, left:right]), np.ascontiguousarray(ink[top:bottom, left:right]))

    def _legible(self, image: np.ndarray, ink: np.ndarray, cap: int, vertical: bool) -> bool:
        """Whether the final crop still shows every part of its text (see ``min_std`` and
        ``min_local_contrast``)."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if float(gray.std()) < self.config.min_std:
            return False
        return min_local_contrast(gray, ink, cap, vertical) >= self.config.min_local_contrast


def ink_box(ink: np.ndarray) -> np.ndarray | None:
    """Axis-aligned box ``[[x0, y0], [x1, y1]]`` around every inked pixel of a uint8 mask, or None.

    Any ink counts, not just solid ink: small inkjet drops rarely reach half coverage, and a box
    around the solid ones alone cut characters off the ends of dot-matrix lines.
    """
    ys, xs = np.nonzero(ink > 32)
    if len(xs) == 0:
        return None
    return np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], np.float32)


def min_local_contrast(gray: np.ndarray, ink: np.ndarray, cap: int, vertical: bool) -> float:
    """Smallest ink-to-background contrast over the stretches of a line, each about a cap height long.

    Ink is where the mask is solid; background is what lies clear of the ink's halo (blur and
    bleed darken the pixels right next to strokes). Each stretch compares its own ink with its own
    background, so a local glare or shadow counts where it falls.
    """
    if vertical:  # stretches run down a vertical code
        gray, ink = gray.T, ink.T
    solid = ink > 127
    halo = max(3, cap // 4) | 1
    clear = cv2.dilate((ink > 8).astype(np.uint8), np.ones((halo, halo), np.uint8)) == 0
    columns = np.nonzero(solid.any(axis=0))[0]
    if len(columns) == 0 or not clear.any():
        return 0.0
    step = max(cap, 4)
    starts = range(int(columns[0]), int(columns[-1]) + 1, step)
    counts = [int(solid[:, start : start + step].sum()) for start in starts]
    least = max(4, 0.25 * float(np.median(counts)))  # gaps between words, slivers of a neighbour's edge
    worst = float("inf")
    for start, count in zip(starts, counts):
        if count < least:
            continue
        band = slice(max(start - step // 2, 0), start + step + step // 2)  # background from a little wider
        stroke = gray[:, start : start + step][solid[:, start : start + step]]
        background = gray[:, band][clear[:, band]]
        if background.size < 4:
            background = gray[clear]
        # Dark ink, light ink and embossing (shadow and highlight on the same stroke) all push the
        # strokes' tails past the background's; sensor noise moves both tails alike.
        lo_s, hi_s = np.percentile(stroke, (20, 80))
        lo_b, hi_b = np.percentile(background, (20, 80))
        worst = min(worst, max(float(lo_b - lo_s), float(hi_s - hi_b), 0.0))
    return worst if worst != float("inf") else 0.0
