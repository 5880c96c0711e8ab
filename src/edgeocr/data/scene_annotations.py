"""``annotations.jsonl``: whole images with one polygon (and text) per line, without torch.

One JSON object per image: ``file`` (relative to the folder), ``width``, ``height``,
``exhaustive`` (every text line is labelled; default true), an optional ``category``, and
``lines: [{poly, text?, ignore?, vertical?, ...}]``, as ``edgeocr synth scenes`` writes them. A
``poly`` is a list of ``[x, y]`` points or a flat ``[x1, y1, x2, y2, ...]`` list (the
hand-labelled sets use the latter).

Shared by detector training (:mod:`edgeocr.data.scene_dataset`, which skips bad lines) and the
end-to-end evaluation (:mod:`edgeocr.bench.e2e`, which refuses them, naming ``file:line``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeocr.core.errors import DataError, read_text_or_raise

ANNOTATIONS_FILE = "annotations.jsonl"


def parse_poly(value: Any) -> np.ndarray:
    """``[[x, y], ...]`` or ``[x1, y1, x2, y2, ...]`` (at least 3 points) as float32 ``[K, 2]``.

    ValueError says what is wrong otherwise."""
    try:
        points = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("poly is not a list of numbers") from None
    if points.ndim == 1 and points.size % 2 == 0:
        points = points.reshape(-1, 2)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        shape = list(np.asarray(value, dtype=object).shape)
        raise ValueError(f"poly needs at least 3 [x, y] points, got shape {shape}")
    if not np.isfinite(points).all():
        raise ValueError("poly has non-finite coordinates")
    return points


@dataclass(frozen=True)
class SceneRecord:
    """One parsed line of ``annotations.jsonl``."""

    path: Path
    width: int | None
    height: int | None
    polys: list[np.ndarray]
    ignore: list[bool]
    exhaustive: bool
    line: int  # 1-based line number in annotations.jsonl
    file: str = ""  # as written in the annotation
    texts: tuple[str | None, ...] = ()  # each line's text, None where it has none
    vertical: tuple[bool, ...] = ()  # each line's characters stacked one under the other
    category: str | None = None  # the annotation's own category, when it gives one


def parse_scene_record(record: Any, base: Path, line: int) -> SceneRecord:
    """A :class:`SceneRecord` from one decoded JSON object; ValueError says what is wrong."""
    if isinstance(record, dict) and "annotation" in record and "lines" not in record:
        record = record["annotation"]  # the record layout synth writes into LMDB labels
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    file = record.get("file")
    if not isinstance(file, str) or not file:
        raise ValueError("no 'file'")
    lines = record.get("lines", [])
    if not isinstance(lines, list):
        raise ValueError("'lines' is not a list")
    polys, ignore, texts, vertical = [], [], [], []
    for k, entry in enumerate(lines):
        if not isinstance(entry, dict) or "poly" not in entry:
            raise ValueError(f"lines[{k}] has no 'poly'")
        try:
            polys.append(parse_poly(entry["poly"]))
        except ValueError as exc:
            raise ValueError(f"lines[{k}]: {exc}") from None
        text = entry.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"lines[{k}]: 'text' is not a string")
        ignore.append(bool(entry.get("ignore", False)))
        texts.append(text)
        vertical.append(bool(entry.get("vertical", False)))
    width, height = record.get("width"), record.get("height")
    category = record.get("category")
    return SceneRecord(
        path=base / file,
        width=int(width) if width is not None else None,
        height=int(height) if height is not None else None,
        polys=polys,
        ignore=ignore,
        exhaustive=bool(record.get("exhaustive", True)),
        line=line,
        file=file,
        texts=tuple(texts),
        vertical=tuple(vertical),
        category=str(category) if category is not None else None,
    )


def read_scene_annotations(root: Path | str, strict: bool = False) -> tuple[Path, list[SceneRecord], list[str]]:
    """(annotations file, usable records, reasons for skipped lines) of a scene folder or its ``.jsonl``.

    ``strict``: the first unusable line (bad JSON, bad polygon, missing image) raises
    :class:`DataError` naming ``file:line`` instead of being skipped."""
    root = Path(root)
    path = root if root.is_file() else root / ANNOTATIONS_FILE
    text = read_text_or_raise(
        path,
        DataError,
        f"{path}: no such file (expected {ANNOTATIONS_FILE}, one JSON object per image)",
        "annotations",
        encoding="utf-8-sig",
    )
    records, skipped = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        problem = None
        try:
            record = parse_scene_record(json.loads(raw), path.parent, number)
        except json.JSONDecodeError as exc:
            problem = f"not valid JSON ({exc.msg})"
        except ValueError as exc:
            problem = str(exc)
        else:
            if not record.path.is_file():
                problem = f"image {record.path} does not exist"
        if problem is not None:
            if strict:
                raise DataError(f"{path}:{number}: {problem}")
            skipped.append(f"{path}:{number}: {problem}")
            continue
        records.append(record)
    if not records:
        raise DataError(f"{path}: no usable scene" + (f" ({skipped[0]})" if skipped else " (the file is empty)"))
    return path, records, skipped
