"""Line crops: one printed code line, as a text detector would cut it out of a camera frame."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeocr.synth.capture import seeded, warp_with_points
from edgeocr.synth.fonts import FontLibrary
from edgeocr.synth.processes import apply_print, render_text_mask, sample_style, to_uint8
from edgeocr.synth.generator import Synthesizer
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
    min_contrast: float = Field(
        default=28.0, ge=0,
        description="Least gray-level difference between ink and surface (medians) as printed; a sample below "
        "it is drawn again, so that labels never describe text nobody could read.",
    )
    min_std: float = Field(
        default=8.0, ge=0, description="Least gray-level standard deviation of the final crop (same reason)."
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

    def __init__(self, catalogue: Catalogue, fonts: FontLibrary, seed: int,
                 config: LineSynthConfig | None = None) -> None:
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
        # grow the canvas to fit, so they never cut the text).
        pad = int(cap * cfg.margin[1]) + 2
        th, tw = alpha.shape
        h, w = th + 2 * pad, tw + 2 * pad
        full_alpha = np.zeros((h, w), dtype=np.float32)
        full_alpha[pad : pad + th, pad : pad + tw] = alpha
        surface = make_surface(style.surface, h, w, rng, self.bank)
        image = to_uint8(apply_print(surface, full_alpha, style, rng, self.bank, cap))
        if check and ink_contrast(image, full_alpha) < cfg.min_contrast:
            return None
        if not vertical and rng.random() < cfg.cylinder_p:
            image = cylinder_warp(image, rng)

        box = [(pad, pad), (pad + tw, pad), (pad + tw, pad + th), (pad, pad + th)]
        if rng.random() < cfg.capture_p:
            image, box = warp_with_points(image, np.array(box, np.float32), rng)
        image = self._crop(image, np.asarray(box, np.float32), cap, rng)
        if rng.random() < cfg.capture_p:
            image = seeded(self.photometric, rng)(image=image)["image"]
        if check and float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).std()) < cfg.min_std:
            return None
        return LineSample(image=image, text=text, category=template.spec.category, template=template.spec.name,
                          process=style.process, surface=style.surface, vertical=vertical)

    def _crop(self, image: np.ndarray, box: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
        """Axis-aligned crop around the (transformed) text box, with uneven margins as detectors give."""
        lo, hi = self.config.margin
        x0, y0 = box.min(axis=0)
        x1, y1 = box.max(axis=0)
        m = rng.uniform(lo, hi, 4) * cap
        h, w = image.shape[:2]
        left, top = max(int(x0 - m[0]), 0), max(int(y0 - m[1]), 0)
        right, bottom = min(int(np.ceil(x1 + m[2])), w), min(int(np.ceil(y1 + m[3])), h)
        return np.ascontiguousarray(image[top:bottom, left:right])
