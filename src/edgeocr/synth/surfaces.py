"""Surfaces that codes are printed on: paper, cardboard, plastic, metal, foil, glass.

Textures are pre-computed once per worker (seeded from the dataset seed, so every worker holds the
same bank) and cut into windows per sample: generating noise fields per sample would dominate the
time budget of 1000 crops per second.
"""

from __future__ import annotations

import cv2
import numpy as np

SURFACES = ("paper", "cardboard", "plastic", "metal", "foil", "glass")
SURFACE_WEIGHTS = (0.22, 0.2, 0.22, 0.16, 0.08, 0.12)

# Base colours (BGR) per surface, sampled around.
_BASE_COLOURS = {
    "paper": [(235, 240, 242), (225, 235, 240), (250, 250, 250), (205, 225, 235)],
    "cardboard": [(110, 150, 190), (95, 135, 175), (140, 170, 200), (200, 205, 210)],
    "plastic": [
        (240, 240, 240),
        (30, 30, 30),
        (160, 60, 20),
        (40, 40, 170),
        (40, 140, 40),
        (30, 200, 230),
        (200, 200, 200),
        (120, 80, 140),
    ],
    "metal": [(170, 170, 170), (120, 120, 125), (200, 200, 205), (90, 95, 100), (60, 60, 65)],
    "foil": [(200, 200, 200), (150, 170, 180), (60, 140, 200), (170, 140, 120)],
    "glass": [(40, 50, 45), (90, 110, 100), (20, 60, 110), (140, 150, 150), (25, 25, 30)],
}


# Texture components per surface, in grey levels of amplitude.
_SURFACE_MIX = {
    "paper": {"fibre": 4.0, "fine": 2.0},
    "cardboard": {"fibre": 9.0, "blotch": 6.0},
    "plastic": {"blotch": 3.0, "fine": 1.5},
    "metal": {"brushed": 14.0, "fine": 3.0},
    "foil": {"crinkle": 40.0, "blotch": 10.0},
    "glass": {"blotch": 4.0},
}


class TextureBank:
    """Pre-computed monochrome texture fields, float32, zero mean, unit-ish amplitude."""

    SIZE = (384, 1024)

    def __init__(self, seed: int, per_kind: int = 3) -> None:
        rng = np.random.default_rng([seed, 0x7E57])
        h, w = self.SIZE
        self.fields: dict[str, list[np.ndarray]] = {k: [] for k in ("fine", "fibre", "brushed", "blotch", "crinkle")}
        for _ in range(per_kind):
            fine = rng.standard_normal((h, w)).astype(np.float32)
            self.fields["fine"].append(fine)
            fibre = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.2)
            fibre += 0.6 * cv2.resize(rng.standard_normal((h // 8, w // 8)).astype(np.float32), (w, h))
            self.fields["fibre"].append(_normalise(fibre))
            brushed = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigmaX=25, sigmaY=0.6)
            self.fields["brushed"].append(_normalise(brushed))
            blotch = cv2.resize(
                rng.standard_normal((h // 32, w // 32)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
            )
            self.fields["blotch"].append(_normalise(blotch))
            crinkle = cv2.resize(
                rng.standard_normal((h // 6, w // 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR
            )
            crinkle = np.abs(cv2.Laplacian(crinkle, cv2.CV_32F, ksize=3))
            self.fields["crinkle"].append(_normalise(crinkle))
        # Each surface's texture mix, composed once: one window per sample instead of two plus a blend.
        for kind, mix in _SURFACE_MIX.items():
            self.fields[kind] = [
                sum(weight * self.fields[part][i] for part, weight in mix.items()).astype(np.float32)
                for i in range(per_kind)
            ]

    def window(self, kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        """A random h x w window of a texture (resized when the window is larger than the bank)."""
        field = self.fields[kind][int(rng.integers(0, len(self.fields[kind])))]
        fh, fw = field.shape
        if h > fh or w > fw:
            s = max(h / fh, w / fw)
            field = cv2.resize(field, (int(np.ceil(fw * s)), int(np.ceil(fh * s))))
            fh, fw = field.shape
        y = int(rng.integers(0, fh - h + 1))
        x = int(rng.integers(0, fw - w + 1))
        return field[y : y + h, x : x + w]


def _normalise(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    return (a / (a.std() + 1e-6)).astype(np.float32)


def _gradient(h: int, w: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth uneven light: a bilinear ramp between four random corner gains, around 1."""
    corners = (1.0 + strength * rng.uniform(-0.5, 0.5, (2, 2))).astype(np.float32)
    return cv2.resize(corners, (w, h), interpolation=cv2.INTER_LINEAR)


def make_surface(kind: str, h: int, w: int, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    """A float32 BGR surface (values around [0, 255]; the final conversion saturates) of the given kind.

    Texture and light are built in one channel and multiplied into the base colour once: every
    full-colour pass counts at a thousand crops per second.
    """
    colours = _BASE_COLOURS[kind]
    base = np.array(colours[int(rng.integers(0, len(colours)))], dtype=np.float32)
    base = np.clip(base * rng.uniform(0.85, 1.12) + rng.normal(0, 8, 3), 1, 255).astype(np.float32)
    if kind == "metal" and rng.random() < 0.3:
        tex = bank.window(kind, w, h, rng).T  # brushed across the part rather than along it
    else:
        tex = bank.window(kind, h, w, rng)
    if kind == "cardboard" and rng.random() < 0.3:  # corrugation showing through the liner
        period = rng.uniform(8, 30)
        phase = rng.uniform(0, 2 * np.pi)
        tex = tex + (6 * np.sin(np.arange(w, dtype=np.float32) * (2 * np.pi / period) + phase))[None, :]
    grad = _gradient(h, w, rng, rng.uniform(0.0, 0.5 if kind in ("metal", "foil", "glass") else 0.25))
    # Texture is relative to the mean brightness, so dark and light surfaces both show it.
    gain = grad * (1.0 + tex * (1.0 / float(base.mean() + 20)))
    if kind in ("glass", "plastic", "metal") and rng.random() < 0.4:
        gain = gain + specular_band(w, rng)[None, :] * rng.uniform(0.2, 0.8)
    return colourise(gain, base)


def colourise(gain: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """gain [h, w] times a BGR colour -> [h, w, 3] float32.

    Per-channel products merged by OpenCV: numpy's broadcast over a trailing axis of 3 is six
    times slower here, and this runs on every sample.
    """
    return cv2.merge([gain * float(c) for c in colour])


def replicate(channel: np.ndarray) -> np.ndarray:
    """[h, w] -> [h, w, 3] float32 (same reason as colourise)."""
    return cv2.merge([channel, channel, channel])


def specular_band(w: int, rng: np.random.Generator) -> np.ndarray:
    """A soft bright band, as a light source reflects off a glossy or curved surface."""
    centre = rng.uniform(0, w)
    width = rng.uniform(0.05, 0.3) * w
    xs = np.arange(w, dtype=np.float32) - centre
    return np.exp(-0.5 * (xs / max(width, 1.0)) ** 2).astype(np.float32)


def cylinder_warp(
    image: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Wrap an image around a vertical cylinder seen head-on (cans, bottles, tubes).

    Text compresses towards the edges and the light falls off with the surface's angle. ``mask``
    (the ink, say) moves with the image, unshaded: the middle of the print spreads outwards, so a
    box drawn before the warp no longer holds the text.
    """
    h, w = image.shape[:2]
    # The print spans +-theta_max of the cylinder; output column x shows angle asin(x / R).
    theta_max = rng.uniform(0.3, 0.9) * np.pi / 2
    radius = (w / 2) / np.sin(theta_max)
    xs = np.arange(w, dtype=np.float32) - (w - 1) / 2
    theta = np.arcsin(np.clip(xs / radius, -1, 1))
    src_x = (theta / theta_max + 1) * (w - 1) / 2
    map_x = np.broadcast_to(src_x[None, :], (h, w)).astype(np.float32)
    map_y = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)).astype(np.float32)
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    shade = np.broadcast_to((0.55 + 0.45 * np.cos(theta)).astype(np.float32)[None, :], (h, w))
    if warped.ndim == 3:
        shade = replicate(np.ascontiguousarray(shade))
    warped = cv2.convertScaleAbs(cv2.multiply(warped.astype(np.float32), shade))
    if mask is not None:
        mask = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return warped, mask
