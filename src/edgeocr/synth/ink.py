"""Ink masks: where a print process puts its mark, as float32 alpha in [0, 1].

Three ways to form characters: TrueType glyphs (thermal transfer, laser, stamps, paint), dots on a
grid (continuous inkjet), and segment displays (TrueType DSEG fonts). Any of them can be laid out
horizontally or vertically (one upright character under the next).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgeocr.synth.dotfont import DOT_GRIDS, GLYPH_STYLES, dot_glyph


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=512)
def _cap_box(path: str, size: int) -> tuple[int, int]:
    """Top and bottom of a capital H at this size (rendering it is too slow to repeat per sample)."""
    box = _font(path, size).getbbox("H")
    return box[1], box[3]


# Glyphs are rendered at a few reference cap heights and the line is scaled to the wanted one:
# a glyph cache keyed by every size would miss nearly always.
_REFERENCE_CAPS = (20, 40, 64)


def ttf_mask(text: str, font_path: str, cap_height: int, tracking: float = 0.0, stroke: int = 0) -> np.ndarray:
    """Render ``text`` so that its capitals are ``cap_height`` pixels tall.

    ``tracking`` adds letter spacing as a fraction of the cap height (negative condenses).
    Lines are assembled from cached glyph bitmaps, which is several times faster than PIL drawing
    the string. Kerning is lost, as on coders, which print each character on its own pitch.
    """
    size = _reference_size(font_path, cap_height)
    font = _font(font_path, size)
    ascent, descent = font.getmetrics()
    pad = 2 + stroke
    real_top, real_bottom = _cap_box(font_path, size)
    gap = tracking * (real_bottom - real_top)  # letter spacing in cap heights at the rendered size
    height = ascent + descent + 2 * pad
    glyphs = [_glyph(font_path, size, c, stroke) for c in text]
    width = int(sum(g[1] for g in glyphs) + gap * max(len(text) - 1, 0)) + 2 * pad + 8
    line = np.zeros((height, max(width, 1)), dtype=np.uint8)
    x = float(pad)
    for bitmap, advance in glyphs:
        xi = int(round(x))
        h, w = bitmap.shape
        w = min(w, line.shape[1] - xi)
        if w > 0:
            np.maximum(line[pad : pad + h, xi : xi + w], bitmap[:, :w], out=line[pad : pad + h, xi : xi + w])
        x += advance + gap
    line = _trim_rows(line, pad + real_top, real_bottom - real_top)
    scale = cap_height / max(real_bottom - real_top, 1)
    if abs(scale - 1) > 0.02:
        new_size = (max(1, int(round(line.shape[1] * scale))), max(1, int(round(line.shape[0] * scale))))
        line = cv2.resize(line, new_size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return line.astype(np.float32) * (1.0 / 255.0)


def _reference_size(font_path: str, cap_height: int) -> int:
    """Font size (in points = pixels) whose capitals are the reference cap height above ``cap_height``."""
    ref_cap = next((c for c in _REFERENCE_CAPS if c >= cap_height), _REFERENCE_CAPS[-1])
    top, bottom = _cap_box(font_path, 100)
    return max(6, int(round(ref_cap * 100 / max(bottom - top, 1))))


def warm_glyph_cache(font_paths: list[str], chars: str, cap_heights: tuple[int, int], stroke: bool) -> None:
    """Render every glyph a worker will need up front (a fraction of a second per worker), so the
    generator runs at full speed from its first sample rather than after tens of thousands."""
    for path in font_paths:
        sizes = {_reference_size(path, c) for c in range(cap_heights[0], cap_heights[1] + 1)}
        for size in sizes:
            for c in chars:
                _glyph(path, size, c, 0)
                if stroke:
                    _glyph(path, size, c, 1)


@lru_cache(maxsize=65536)
def _glyph(path: str, size: int, char: str, stroke: int) -> tuple[np.ndarray, float]:
    """One character's uint8 alpha (full line height) and its advance width."""
    font = _font(path, size)
    ascent, descent = font.getmetrics()
    advance = font.getlength(char)
    canvas = Image.new("L", (int(advance) + 2 * stroke + 4, ascent + descent), 0)
    ImageDraw.Draw(canvas).text((0, 0), char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    return np.asarray(canvas, dtype=np.uint8), advance


def _trim_rows(alpha: np.ndarray, cap_top: int, cap_height: int) -> np.ndarray:
    """Keep the ink's rows, and at least the cap box, so "-" or "." stays where it is printed."""
    rows = alpha.any(axis=1).nonzero()[0]
    first = min(cap_top, rows[0]) if len(rows) else cap_top
    last = max(cap_top + cap_height, rows[-1] + 1) if len(rows) else cap_top + cap_height
    return np.ascontiguousarray(alpha[first:last])


@dataclass(frozen=True)
class DotParams:
    """How one continuous-inkjet printer prints: sampled once per code so every character matches."""

    grid: tuple[int, int]
    pitch: float  # pixels between dot centres
    radius: float  # > pitch / 2 makes neighbouring dots merge (ink spread)
    p_missing: float  # blocked nozzle or satellite drop lost
    jitter: float  # dot placement noise, fraction of pitch
    speed_wobble: float  # product speed variation: column pitch varies along the line
    slant: float  # print head not square to the product's motion
    char_gap: int  # empty columns between characters
    glyph_style: int = 0  # which of the hand-drawn designs (a printer's font) each character takes

    @staticmethod
    def sample(rng: np.random.Generator, cap_height: float) -> DotParams:
        grid = DOT_GRIDS[int(rng.choice(len(DOT_GRIDS), p=[0.45, 0.05, 0.25, 0.1, 0.1, 0.05]))]
        pitch = cap_height / grid[1]
        return DotParams(
            grid=grid,
            pitch=pitch,
            radius=pitch * rng.uniform(0.3, 0.62),
            p_missing=float(rng.choice([0.0, rng.uniform(0.0, 0.04), rng.uniform(0.04, 0.1)], p=[0.4, 0.45, 0.15])),
            jitter=rng.uniform(0.0, 0.1),
            speed_wobble=rng.uniform(0.0, 0.15),
            slant=rng.uniform(-0.25, 0.25) if rng.random() < 0.3 else 0.0,
            char_gap=int(rng.integers(1, 3)),
            glyph_style=int(rng.integers(0, GLYPH_STYLES)),
        )


@lru_cache(maxsize=64)
def _disc(radius: float) -> np.ndarray:
    """An anti-aliased disc kernel (one inkjet drop), radius in pixels."""
    r = max(radius, 0.5)
    size = int(np.ceil(r)) * 2 + 3
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return np.clip(r + 0.5 - np.hypot(yy - c, xx - c), 0, 1).astype(np.float32)


def dot_matrix_mask(text: str, params: DotParams, rng: np.random.Generator, fallback_font: str | None) -> np.ndarray:
    """Draw ``text`` dot by dot as a continuous-inkjet printer does, with its faults.

    Drops land as impulses on a 2x grid (sub-pixel placement) and are stamped by convolving with a
    disc of the drop's size: one filter call instead of hundreds of circle calls.
    """
    # Small dots are placed on a 2x grid (sub-pixel placement); large ones need no supersampling.
    ss = 2 if params.pitch < 3 else 1
    cols, rows = params.grid
    pitch = params.pitch * ss
    glyphs = [dot_glyph(c, cols, rows, fallback_font, params.glyph_style) for c in text]
    n_cols = sum(g.shape[1] + params.char_gap for g in glyphs)
    phase = rng.uniform(0, 2 * np.pi)
    col_pitch = pitch * (1.0 + params.speed_wobble * np.sin(np.linspace(0, rng.uniform(1, 6), n_cols + 1) + phase))
    col_x = np.concatenate([[0.0], np.cumsum(col_pitch[:-1])])
    radius = params.radius * ss
    margin = radius + pitch
    lean = abs(params.slant) * rows * pitch
    height = int(np.ceil(rows * pitch + 2 * margin))
    width = int(np.ceil(col_x[-1] + 2 * margin + lean)) + 1
    x0 = margin + (lean if params.slant < 0 else 0.0)

    # Dot centres of the whole line at once.
    xs, ys = [], []
    col = 0
    for g in glyphs:
        on_rows, on_cols = np.nonzero(g)
        ys.append(on_rows)
        xs.append(col + on_cols)
        col += g.shape[1] + params.char_gap
    dot_rows = np.concatenate(ys) if ys else np.zeros(0, int)
    dot_cols = np.concatenate(xs) if xs else np.zeros(0, int)
    n = len(dot_rows)
    sigma = params.jitter * pitch + 1e-6
    y = margin + dot_rows * pitch + rng.normal(0, sigma, n)
    x = x0 + col_x[dot_cols] + rng.normal(0, sigma, n) + params.slant * (rows - 1 - dot_rows) * pitch
    keep = rng.random(n) >= params.p_missing
    density = rng.uniform(0.65, 1.0, n).astype(np.float32)
    canvas = np.zeros((height, width), dtype=np.float32)
    yi = np.clip(np.rint(y).astype(int), 0, height - 1)
    xi = np.clip(np.rint(x).astype(int), 0, width - 1)
    np.add.at(canvas, (yi[keep], xi[keep]), density[keep])
    out = cv2.filter2D(canvas, -1, _disc(round(radius * 2) / 2), borderType=cv2.BORDER_CONSTANT)
    np.clip(out, 0, 1, out=out)
    return cv2.resize(out, (width // ss, height // ss), interpolation=cv2.INTER_AREA) if ss > 1 else out


def stack_vertical(char_masks: list[np.ndarray], gap: int) -> np.ndarray:
    """Lay characters out top to bottom, each upright and centred in a common column."""
    width = max(m.shape[1] for m in char_masks)
    height = sum(m.shape[0] for m in char_masks) + gap * (len(char_masks) - 1)
    out = np.zeros((height, width), dtype=np.float32)
    y = 0
    for m in char_masks:
        x = (width - m.shape[1]) // 2
        out[y : y + m.shape[0], x : x + m.shape[1]] = m
        y += m.shape[0] + gap
    return out


def trim(alpha: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Crop to the ink (an inkless mask is returned as it is)."""
    ys, xs = np.nonzero(alpha > threshold)
    if len(ys) == 0:
        return alpha
    return alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
