"""Capture effects: camera geometry (OpenCV) and blur, noise, light and compression (albumentations).

Geometry moves the text's corner points with the image, so crops and scene polygons follow the
text. Every call is seeded from the sample's own generator: the same seed gives the same image
whatever the worker that made it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np


@dataclass(frozen=True)
class GeometryRange:
    """Ranges of the camera geometry applied to a crop or a scene."""

    rotate_deg: float = 5.0
    shear_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    perspective: float = 0.05  # corner displacement, fraction of the image size
    p_affine: float = 0.7
    p_perspective: float = 0.35


def random_homography(h: int, w: int, rng: np.random.Generator, ranges: GeometryRange) -> np.ndarray | None:
    """Rotation, shear, scale and perspective composed into one 3x3 matrix about the image centre;
    None when this draw applies no geometry."""
    m = None
    if rng.random() < ranges.p_affine:
        angle = np.deg2rad(rng.uniform(-ranges.rotate_deg, ranges.rotate_deg))
        shear = np.tan(np.deg2rad(rng.uniform(-ranges.shear_deg, ranges.shear_deg)))
        scale = rng.uniform(*ranges.scale)
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        m = np.array([[c, c * shear - s, 0], [s, s * shear + c, 0], [0, 0, 1]])
    if rng.random() < ranges.p_perspective:
        src = (np.array([[0, 0], [w, 0], [w, h], [0, h]]) - [w / 2, h / 2]).astype(np.float32)
        dst = (src + rng.uniform(-ranges.perspective, ranges.perspective, (4, 2)) * [w, h]).astype(np.float32)
        p = cv2.getPerspectiveTransform(src, dst)
        m = p if m is None else p @ m
    if m is None:
        return None
    to_centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
    back = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    return back @ m @ to_centre


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    moved = np.c_[points, np.ones(len(points))] @ m.T
    return moved[:, :2] / moved[:, 2:3]


def warp_with_points(
    image: np.ndarray, points: np.ndarray, rng: np.random.Generator, ranges: GeometryRange = GeometryRange()
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a random camera geometry; the output grows to fit the whole image (nothing is cut).

    One OpenCV warp for the whole geometry: albumentations' Affine and Perspective cost 0.3 ms of
    overhead each per small crop and resample the image twice; the photometric effects below do
    go through albumentations.
    """
    h, w = image.shape[:2]
    m = random_homography(h, w, rng, ranges)
    if m is None:
        return image, points
    corners = _apply(m, np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))
    x0, y0 = np.floor(corners.min(axis=0))
    x1, y1 = np.ceil(corners.max(axis=0))
    size = (int(x1 - x0), int(y1 - y0))
    if size[0] > 4 * w or size[1] > 4 * h:  # a degenerate draw: keep the image as it is
        return image, points
    m = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ m
    if abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12:
        warped = cv2.warpAffine(image, m[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        warped = cv2.warpPerspective(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, _apply(m, points.astype(np.float64)).astype(np.float32)


def photometric_pipeline() -> A.Compose:
    """Blur, noise, light and compression, as cameras on a production line see codes."""
    return A.Compose(
        [
            A.OneOf(
                [
                    A.MotionBlur(blur_limit=(3, 7)),  # the product moves past the camera
                    A.GaussianBlur(blur_limit=(3, 5)),  # depth of field, curved parts
                    # Disc-shaped defocus looks truest but costs 10x a Gaussian: used sparingly.
                    A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3), p=0.25),
                ],
                p=0.45,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=(-0.45, 0.25), p=0.6),
            A.RandomGamma(gamma_limit=(60, 160), p=0.25),
            # Uneven light: shadows from the conveyor or the part itself, spot lights, vignetting.
            A.OneOf(
                [
                    A.Illumination(mode="linear", intensity_range=(0.05, 0.2)),
                    A.Illumination(mode="corner", intensity_range=(0.05, 0.2)),
                    A.Illumination(mode="gaussian", intensity_range=(0.05, 0.2), sigma_range=(0.2, 0.8)),
                ],
                p=0.35,
            ),
            A.RandomSunFlare(
                flare_roi=(0, 0, 1, 1), src_radius=60, num_flare_circles_range=(1, 3), method="overlay", p=0.04
            ),  # glare on glossy packs
            A.Downscale(scale_range=(0.35, 0.85), p=0.2),  # low resolution, far cameras
            # Sensor noise, grey or per colour channel (albumentations' ISONoise looks alike but costs
            # 0.7 ms per crop, a third of the whole budget).
            A.OneOf(
                [
                    A.GaussNoise(std_range=(0.02, 0.09), per_channel=False),
                    A.GaussNoise(std_range=(0.02, 0.07), per_channel=True),
                ],
                p=0.4,
            ),
            A.ToGray(p=0.25),  # monochrome industrial cameras
            A.ImageCompression(quality_range=(25, 90), p=0.35),
        ]
    )


def seeded(pipeline: A.Compose, rng: np.random.Generator) -> A.Compose:
    """Point every transform of ``pipeline`` at generators drawn from the sample's ``rng``.

    One shared pair of generators per call (``set_random_state``) costs far less than seeding each
    transform (``set_random_seed``), which took a quarter of the time budget per crop.
    """
    seed = int(rng.integers(0, 2**63 - 1))
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline
