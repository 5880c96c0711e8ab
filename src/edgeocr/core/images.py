"""Decoding images from files and bytes with clear errors (numpy and OpenCV only)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeocr.core.errors import ImageError


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to uint8 BGR (or gray); ImageError names ``source`` when it fails."""
    if not data:
        raise ImageError(f"{source}: empty image data")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f"{source}: not a decodable image ({len(data)} bytes)")
    return image


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file (any format OpenCV decodes) as uint8 BGR."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return decode_image(data, str(path))
