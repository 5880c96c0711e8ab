"""Full scenes: several code blocks printed on a product-like background, with a polygon per line.

Used to train and test text detectors and the whole reading pipeline. Every printed line is
labelled (``exhaustive: true``); decorations (labels, stripes, barcodes, shapes) carry no text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeocr.synth.capture import GeometryRange, seeded, warp_with_points
from edgeocr.synth.fonts import FontLibrary
from edgeocr.synth.generator import Synthesizer
from edgeocr.synth.processes import apply_print, choose, render_text_mask, sample_style, to_uint8
from edgeocr.synth.surfaces import SURFACE_WEIGHTS, SURFACES, make_surface
from edgeocr.synth.templates import Catalogue

SCENE_SIZES = ((640, 480), (800, 600), (960, 540), (640, 640), (480, 640))


class SceneSynthConfig(BaseModel):
    """Knobs of the scene generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    anchor_date: dt.date = Field(default=dt.date(2026, 1, 1), description="Dates are drawn around this day.")
    blocks: tuple[int, int] = Field(default=(1, 4), description="Code blocks per scene (min, max).")
    cap_height: tuple[int, int] = Field(default=(10, 36), description="Capital height in pixels (min, max).")
    p_any_angle: float = Field(default=0.1, ge=0, le=1, description="Probability a block is turned up to 90 deg.")
    p_label: float = Field(default=0.5, ge=0, le=1, description="Probability a block sits on its own label.")


@dataclass(frozen=True)
class SceneLine:
    text: str
    poly: list[list[float]]  # four corners, clockwise from top-left of the text as printed
    template: str
    process: str
    vertical: bool


@dataclass(frozen=True)
class SceneSample:
    image: np.ndarray  # uint8 BGR
    lines: list[SceneLine]


class SceneSynthesizer(Synthesizer):
    """Deterministic scene generator: ``sample(i)`` depends only on (seed, i)."""

    config: SceneSynthConfig

    def __init__(
        self, catalogue: Catalogue, fonts: FontLibrary, seed: int, config: SceneSynthConfig | None = None
    ) -> None:
        super().__init__(catalogue, fonts, seed, config or SceneSynthConfig())

    def sample(self, index: int) -> SceneSample:
        cfg = self.config
        rng = np.random.default_rng([self.seed, int(index), 0x5CE7E])
        width, height = SCENE_SIZES[int(rng.integers(0, len(SCENE_SIZES)))]
        kind = choose(rng, SURFACES, SURFACE_WEIGHTS)
        canvas = make_surface(kind, height, width, rng, self.bank)
        _decorate(canvas, rng)
        occupied = np.zeros((height, width), dtype=np.uint8)
        lines: list[SceneLine] = []
        for _ in range(int(rng.integers(cfg.blocks[0], cfg.blocks[1] + 1))):
            canvas, placed = self._print_block(canvas, occupied, rng)
            lines += placed
        image = to_uint8(canvas)

        points = np.array([p for line in lines for p in line.poly], np.float32).reshape(-1, 2)
        warped, moved = warp_with_points(image, points, rng, GeometryRange(rotate_deg=3, shear_deg=4, perspective=0.04))
        # Back to the scene's nominal size, polygons scaled along.
        sx, sy = width / warped.shape[1], height / warped.shape[0]
        image = cv2.resize(warped, (width, height), interpolation=cv2.INTER_AREA)
        moved = moved * np.array([sx, sy], np.float32)
        image = seeded(self.photometric, rng)(image=image)["image"]
        out_lines = [
            SceneLine(
                text=line.text,
                poly=np.round(moved[4 * i : 4 * i + 4], 1).tolist(),
                template=line.template,
                process=line.process,
                vertical=line.vertical,
            )
            for i, line in enumerate(lines)
        ]
        return SceneSample(image=image, lines=out_lines)

    def _print_block(
        self, canvas: np.ndarray, occupied: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[SceneLine]]:
        cfg = self.config
        height, width = occupied.shape
        template = self.catalogue.pick(rng)
        texts = template.sample(rng, self.context)
        vertical = len(texts) == 1 and bool(rng.random() < template.spec.vertical)
        cap = int(rng.integers(cfg.cap_height[0], cfg.cap_height[1] + 1))
        style = sample_style(texts, template.spec.processes, self.fonts, rng, cap)
        masks = [render_text_mask(t, style, cap, rng, vertical=vertical) for t in texts]

        # Lay the lines out in block coordinates, left-aligned or centred.
        spacing = int(cap * rng.uniform(0.35, 0.9))
        margin = int(cap * rng.uniform(0.4, 1.0))
        block_w = max(m.shape[1] for m in masks) + 2 * margin
        block_h = sum(m.shape[0] for m in masks) + spacing * (len(masks) - 1) + 2 * margin
        if block_w > width * 0.95 or block_h > height * 0.95:
            return canvas, []
        block_alpha = np.zeros((block_h, block_w), dtype=np.float32)
        centred = rng.random() < 0.4
        rects, y = [], margin
        for m in masks:
            x = margin + ((block_w - 2 * margin - m.shape[1]) // 2 if centred else 0)
            block_alpha[y : y + m.shape[0], x : x + m.shape[1]] = m
            rects.append((x, y, x + m.shape[1], y + m.shape[0]))
            y += m.shape[0] + spacing

        angle = rng.uniform(-90, 90) if rng.random() < cfg.p_any_angle else rng.normal(0, 4)
        for _ in range(25):  # find a free spot
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            m = cv2.getRotationMatrix2D((block_w / 2, block_h / 2), angle, 1.0)
            m[:, 2] += (cx - block_w / 2, cy - block_h / 2)
            corners = cv2.transform(
                np.array([[[0, 0], [block_w, 0], [block_w, block_h], [0, block_h]]], np.float32), m
            )[0]
            if corners.min() < 2 or (corners[:, 0] > width - 2).any() or (corners[:, 1] > height - 2).any():
                continue
            footprint = np.zeros_like(occupied)
            cv2.fillConvexPoly(footprint, corners.astype(np.int32), 1)
            if (footprint & occupied).any():
                continue
            occupied |= footprint
            break
        else:
            return canvas, []

        if rng.random() < cfg.p_label:
            label = make_surface(style.surface, block_h, block_w, rng, self.bank)
            label_mask = cv2.warpAffine(np.ones((block_h, block_w), np.float32), m, (width, height))
            label_img = cv2.warpAffine(label, m, (width, height), borderMode=cv2.BORDER_REPLICATE)
            canvas = cv2.blendLinear(label_img, canvas, label_mask, 1 - label_mask)
        alpha = cv2.warpAffine(block_alpha, m, (width, height), flags=cv2.INTER_LINEAR)
        canvas = apply_print(canvas, alpha, style, rng, self.bank, cap)
        lines = []
        for text, (x0, y0, x1, y1) in zip(texts, rects):
            poly = cv2.transform(np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float32), m)[0]
            lines.append(
                SceneLine(
                    text=text, poly=poly.tolist(), template=template.spec.name, process=style.process, vertical=vertical
                )
            )
        return canvas, lines


def _decorate(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """Product-like clutter without text: labels, stripes, circles, barcodes."""
    height, width = canvas.shape[:2]
    for _ in range(int(rng.integers(1, 6))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(0, 4)
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        if kind == 0:  # a label or panel
            w, h = int(rng.uniform(0.1, 0.5) * width), int(rng.uniform(0.1, 0.4) * height)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, -1)
        elif kind == 1:  # a coloured stripe across the pack
            h = int(rng.uniform(0.02, 0.12) * height)
            cv2.rectangle(canvas, (0, y), (width, y + h), colour, -1)
        elif kind == 2:  # a logo-like disc or ring
            r = int(rng.uniform(0.03, 0.12) * min(width, height))
            cv2.circle(canvas, (x, y), r, colour, -1 if rng.random() < 0.5 else max(2, r // 6), cv2.LINE_AA)
        else:  # a barcode
            bar_h = int(rng.uniform(0.08, 0.2) * height)
            xx = x
            for _ in range(int(rng.integers(20, 50))):
                bw = int(rng.integers(1, 5))
                if rng.random() < 0.5:
                    cv2.rectangle(canvas, (xx, y), (xx + bw - 1, y + bar_h), (20.0, 20.0, 20.0), -1)
                xx += bw
