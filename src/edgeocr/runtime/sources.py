"""Inputs of ``edgeocr read``: files, folders, globs and video files, expanded into frames.

Everything is resolved before any reading starts, so a typo in the last argument fails at once
rather than after an hour of reading. Video files yield every ``every``-th frame, named
``video.mp4#frame=N``.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeocr.core.errors import ImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass(frozen=True)
class InputItem:
    """One input file: an image, or a video read frame by frame."""

    path: Path
    is_video: bool


def expand_inputs(args: Sequence[str | Path]) -> list[InputItem]:
    """Files, folders (searched recursively for images and videos) and glob patterns, in order.

    Raises :class:`ImageError` naming the argument when it matches nothing.
    """
    items: list[InputItem] = []
    for arg in args:
        text = str(arg)
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                raise ImageError(f"{path}: folder holds no images or videos")
            items += [InputItem(p, p.suffix.lower() in VIDEO_SUFFIXES) for p in found]
        elif path.is_file():
            items.append(InputItem(path, path.suffix.lower() in VIDEO_SUFFIXES))
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise ImageError(f"{text}: no file matches this pattern")
            items += [InputItem(p, p.suffix.lower() in VIDEO_SUFFIXES) for p in matches]
        else:
            raise ImageError(f"{text}: no such file or folder")
    return items


def video_frames(path: Path | str | int, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR frame) of every ``every``-th frame; ImageError when it cannot be opened.

    ``path``: a video file, a stream URL, or a camera index (int, as ``cv2.VideoCapture`` takes it).
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    capture = cv2.VideoCapture(path if isinstance(path, int) else str(path))
    if isinstance(path, int):
        path = f"camera {path}"  # for the messages below
    if not capture.isOpened():
        raise ImageError(f"{path}: cannot open as a video")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield index, frame
            index += 1
        if index == 0:
            raise ImageError(f"{path}: video has no readable frames")
    finally:
        capture.release()
