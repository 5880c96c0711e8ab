"""Inputs of ``edgeocr read``: files, folders, globs and video files, expanded into frames.

Everything is resolved before any reading starts, so a typo in the last argument fails at once
rather than after an hour of reading. Video files yield every ``every``-th frame, named
``video.mp4#frame=N``.

Each file is checked before it is read (:mod:`edgeocr.core.files`): a FIFO, a device, a socket, a
symlink loop, a broken symlink, or an image file over the size cap (``max_image_bytes``, default
:data:`~edgeocr.core.files.DEFAULT_MAX_FILE_BYTES`, 256 MiB; videos are streamed, not read whole,
and have no cap) is refused without being opened. :func:`expand_inputs` raises for the first such
file, or, with ``keep_refused``, keeps it as an item whose ``problem`` says why, so that a run can
record it as an error row and read the others.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeocr.core.errors import ImageError
from edgeocr.core.files import DEFAULT_MAX_FILE_BYTES, file_problem

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass(frozen=True)
class InputItem:
    """One input file: an image, or a video read frame by frame. ``problem``: why it is refused
    before being read (not a regular file, a symlink loop, over the size cap), else None."""

    path: Path
    is_video: bool
    problem: str | None = None


def input_item(path: Path, max_image_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> InputItem:
    """``path`` as an input, checked (``stat`` only): images against ``max_image_bytes``, videos uncapped."""
    is_video = path.suffix.lower() in VIDEO_SUFFIXES
    return InputItem(path, is_video, file_problem(path, None if is_video else max_image_bytes))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. a name too long; the item's own check says why
        return False


def expand_inputs(
    args: Sequence[str | Path],
    *,
    max_image_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    keep_refused: bool = False,
) -> list[InputItem]:
    """Files, folders (searched recursively for images and videos) and glob patterns, in order.

    Raises :class:`ImageError` naming the argument when it matches nothing. A file that cannot be
    read (see the module documentation) raises :class:`ImageError` naming it and the reason, or,
    with ``keep_refused``, comes back with its ``problem`` set.
    """
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    items: list[InputItem] = []
    for arg in args:
        text = str(arg)
        path = Path(text)
        if _is_dir(path):
            # Folders are searched by name; FIFOs, devices and broken or looping symlinks with an image
            # or video name are kept, to be refused by name below, never opened.
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and not _is_dir(p))
            if not found:
                raise ImageError(f"{path}: folder holds no images or videos")
            items += [input_item(p, max_image_bytes) for p in found]
        elif os.path.lexists(path):  # a file, or something that is not one (refused with the reason)
            items.append(input_item(path, max_image_bytes))
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if not _is_dir(Path(m)))
            if not matches:
                raise ImageError(f"{text}: no file matches this pattern")
            items += [input_item(p, max_image_bytes) for p in matches]
        else:
            raise ImageError(f"{text}: no such file or folder")
    if not keep_refused:
        refused = next((item for item in items if item.problem is not None), None)
        if refused is not None:
            raise ImageError(f"{refused.path}: {refused.problem}")
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
