"""Print processes: how a code's characters are formed and how the mark sits on the surface.

=========  =======================================================================================
inkjet     continuous-inkjet dot matrix (5x7, 7x9 and taller grids), dots drawn one by one
thermal    thermal-transfer ribbon on labels: crisp dark text, occasional dead print-head pixels
laser      laser marking on coated or paper surfaces: dark, slightly textured strokes
etched     laser etching / engraving: light on dark (or dark on bright metal), low contrast
embossed   embossing or debossing: no ink, only the shading of raised or sunken strokes
stamped    rubber stamps and roller coders: blotchy ink coverage, bleed
painted    stencils and paint (containers, drums): bold, worn
segment    seven- and fourteen-segment digits (DSEG fonts)
=========  =======================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeocr.synth.fonts import FontLibrary
from edgeocr.synth.ink import DotParams, dot_matrix_mask, stack_vertical, trim, ttf_mask
from edgeocr.synth.surfaces import SURFACE_WEIGHTS, SURFACES, TextureBank, colourise, replicate
from edgeocr.synth.templates import PRINT_PROCESSES

PROCESS_WEIGHTS = {
    "inkjet": 0.30,
    "thermal": 0.18,
    "laser": 0.12,
    "etched": 0.08,
    "embossed": 0.08,
    "stamped": 0.08,
    "painted": 0.08,
    "segment": 0.08,
}
assert set(PROCESS_WEIGHTS) == set(PRINT_PROCESSES)

# Where each process is found (surface weights per process).
_PROCESS_SURFACES = {
    "inkjet": ("paper", "cardboard", "plastic", "metal", "foil", "glass"),
    "thermal": ("paper", "plastic"),
    "laser": ("paper", "cardboard", "plastic"),
    "etched": ("metal", "plastic", "glass"),
    "embossed": ("metal", "foil", "plastic", "paper"),
    "stamped": ("paper", "cardboard", "plastic"),
    "painted": ("metal", "plastic", "cardboard"),
    "segment": ("plastic", "paper", "glass"),
}
SEVEN_SEGMENT_CHARS = set("0123456789-:. ")
FOURTEEN_SEGMENT_CHARS = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-:. ")
# The 5x7 inkjet design and the sampled fallback need a font that has every character.
_DOT_FALLBACK_HINTS = ("DejaVuSansMono-Bold", "DejaVuSansMono", "LiberationMono-Bold", "FreeMonoBold")

_DARK_INKS = [(20, 20, 20), (40, 35, 30), (90, 30, 20), (30, 30, 110), (60, 60, 60), (80, 20, 80)]
_LIGHT_INKS = [(245, 245, 245), (225, 230, 230), (60, 220, 240), (200, 230, 250)]
_STAMP_INKS = [(120, 30, 80), (140, 40, 20), (30, 30, 160), (25, 25, 25)]


@dataclass(frozen=True)
class PrintStyle:
    """Everything about how one code block is printed, sampled once per block."""

    process: str
    surface: str
    font: str  # TrueType font for glyphs; the fallback for dot glyphs the 5x7 design lacks
    ink: tuple[float, float, float]  # BGR; unused by embossing
    opacity: float
    dot: DotParams | None
    tracking: float
    bold_stroke: int


def choose(rng: np.random.Generator, options, weights=None):
    """One of ``options``, uniformly or by relative ``weights`` (cheaper than Generator.choice)."""
    if weights is None:
        return options[int(rng.integers(0, len(options)))]
    cumulative = np.cumsum(weights)
    return options[min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(options) - 1)]


def process_fits(process: str, text_lines: list[str]) -> bool:
    """Segment displays cannot show every character."""
    chars = set("".join(text_lines))
    if process == "segment":
        return chars <= FOURTEEN_SEGMENT_CHARS
    return True


def sample_style(
    text_lines: list[str], allowed: list[str] | None, fonts: FontLibrary, rng: np.random.Generator, cap_height: float
) -> PrintStyle:
    candidates = [p for p in (allowed or PRINT_PROCESSES) if process_fits(p, text_lines)] or ["thermal"]
    process = choose(rng, candidates, [PROCESS_WEIGHTS[p] for p in candidates])
    surfaces = _PROCESS_SURFACES[process]
    surface = choose(rng, surfaces, [SURFACE_WEIGHTS[SURFACES.index(s)] for s in surfaces])
    if process == "segment":
        digits_only = set("".join(text_lines)) <= SEVEN_SEGMENT_CHARS
        pool = (
            fonts.seven_segment
            if digits_only and fonts.seven_segment and rng.random() < 0.8
            else fonts.fourteen_segment
        )
        font = choose(rng, pool or fonts.require("seven_segment"))
    elif process in ("painted", "stamped", "embossed"):
        font = choose(rng, fonts.bold or fonts.require("text"))
    elif process == "inkjet":
        font = next((f for hint in _DOT_FALLBACK_HINTS for f in fonts.mono if hint + "." in f), None) or choose(
            rng, fonts.require("text")
        )
    else:
        pool = fonts.require("text") + (fonts.dot if rng.random() < 0.1 else ())
        font = choose(rng, pool)
    return PrintStyle(
        process=process,
        surface=surface,
        font=font,
        ink=(0.0, 0.0, 0.0),  # chosen against the surface colour in apply_print
        opacity=float(rng.uniform(0.3, 0.55) if rng.random() < 0.12 else rng.uniform(0.7, 1.0)),
        dot=DotParams.sample(rng, cap_height) if process == "inkjet" else None,
        tracking=float(rng.uniform(-0.04, 0.25)) if rng.random() < 0.35 else 0.0,
        bold_stroke=int(rng.integers(0, 2)) if process in ("painted", "stamped") else 0,
    )


def render_text_mask(
    text: str, style: PrintStyle, cap_height: int, rng: np.random.Generator, vertical: bool = False
) -> np.ndarray:
    """Ink alpha of one printed line, trimmed to the ink."""
    if vertical:
        gap = max(1, int(cap_height * rng.uniform(0.15, 0.45)))
        cells = [_mask_of(c, style, cap_height, rng) for c in text if c != " "]
        return stack_vertical([trim(c) for c in cells], gap)
    return trim(_mask_of(text, style, cap_height, rng))


def _mask_of(text: str, style: PrintStyle, cap_height: int, rng: np.random.Generator) -> np.ndarray:
    if style.dot is not None:
        return dot_matrix_mask(text, style.dot, rng, style.font)
    return ttf_mask(text, style.font, cap_height, style.tracking, style.bold_stroke)


def _ink_for(surface_mean: float, process: str, rng: np.random.Generator) -> np.ndarray:
    if process == "stamped":
        return np.array(choose(rng, _STAMP_INKS), np.float32)
    dark_surface = surface_mean < 110
    palette = _LIGHT_INKS if dark_surface else _DARK_INKS
    return np.array(choose(rng, palette), np.float32) + rng.normal(0, 6, 3).astype(np.float32)


def apply_print(
    surface: np.ndarray,
    alpha: np.ndarray,
    style: PrintStyle,
    rng: np.random.Generator,
    bank: TextureBank,
    cap_height: float,
) -> np.ndarray:
    """Put the mark ``alpha`` (same size as ``surface``) onto the float32 BGR ``surface``."""
    h, w = alpha.shape
    process = style.process
    if process == "embossed":
        # Raised (or sunken) strokes show only as light and shadow on their flanks.
        height = cv2.GaussianBlur(alpha, (0, 0), max(0.6, cap_height * rng.uniform(0.03, 0.08)))
        gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
        angle = rng.uniform(0, 2 * np.pi)
        relief = (
            (float(np.cos(angle)) * gx + float(np.sin(angle)) * gy)
            * rng.uniform(60, 160)
            * (1 if rng.random() < 0.6 else -1)
        )
        relief += alpha * rng.uniform(-12, 12)  # the stroke tops catch a little more or less light
        return cv2.add(surface, replicate(relief.astype(np.float32, copy=False)))

    a = alpha * style.opacity
    if process == "inkjet" and rng.random() < 0.5:
        a = cv2.GaussianBlur(a, (0, 0), rng.uniform(0.3, 0.9))  # ink wicking into the substrate
    elif process == "thermal" and rng.random() < 0.25:
        dead = rng.integers(0, h, int(rng.integers(1, 3)))  # dead print-head dots leave white streaks
        a[dead, :] = 0 if rng.random() < 0.5 else a[dead, :]
        cols = rng.integers(0, w, int(rng.integers(1, 3)))
        a[:, cols] *= 0.1
    elif process == "stamped":
        coverage = np.clip(0.75 + 0.5 * bank.window("blotch", h, w, rng) + 0.25 * bank.window("fine", h, w, rng), 0, 1)
        a = cv2.GaussianBlur(a * coverage, (0, 0), rng.uniform(0.4, 1.2))
    elif process == "painted" and rng.random() < 0.6:
        wear = bank.window("fibre", h, w, rng) > rng.uniform(1.0, 2.2)
        a = a * np.where(wear, rng.uniform(0.0, 0.5), 1.0).astype(np.float32)
    elif process == "laser":
        a = a * np.clip(0.85 + 0.12 * bank.window("fine", h, w, rng), 0, 1)

    # Inks are chosen against the surface under the mark, not the whole image (scenes are varied).
    mark = alpha[::2, ::2] > 0.05
    mean = float(surface[::2, ::2][mark].mean()) if mark.any() else float(surface[::4, ::4].mean())
    if process == "etched":
        if mean < 130 or rng.random() < 0.5:
            # Etching removes coating or roughens metal: lighter, low-contrast strokes.
            gain = rng.uniform(25, 90)
            speckle = 1 + 0.3 * bank.window("fine", h, w, rng)
            return cv2.add(surface, replicate((a * gain * speckle).astype(np.float32, copy=False)))
        # Annealing marks on bright steel: darker strokes.
        return cv2.multiply(surface, replicate((1 - a * rng.uniform(0.3, 0.7)).astype(np.float32, copy=False)))

    ink = _ink_for(mean, process, rng)
    ink_layer = colourise(np.ones_like(a), ink)
    return cv2.blendLinear(ink_layer, surface, a, 1 - a)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Saturating float to uint8 conversion in one pass."""
    return cv2.convertScaleAbs(image)
