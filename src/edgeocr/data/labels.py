"""``labels.tsv`` folders: ``relative/path<TAB>text`` per line, UTF-8, paths relative to the folder.

The first folder of each relative path is its category (per-category metrics use it). Problems are
reported with ``file:line``: strict readers raise on the first, lenient ones (training) skip the
line and keep the reason so the run can say how many samples it dropped and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeocr.core.charset import Charset
from edgeocr.core.errors import DataError

LABELS_FILE = "labels.tsv"


@dataclass(frozen=True)
class LabelledImage:
    """One labelled crop."""

    path: Path  # absolute path of the image
    file: str  # as written in labels.tsv
    text: str
    line: int  # 1-based line number in labels.tsv
    category: str  # first folder of ``file`` ("" for files at the top level)


def category_of(relative_path: str) -> str:
    parts = Path(relative_path).parts
    return parts[0] if len(parts) > 1 else ""


def read_labels(
    root: Path | str, charset: Charset | None = None, strict: bool = True, check_files: bool = True
) -> tuple[list[LabelledImage], list[str]]:
    """Read ``root/labels.tsv``; returns the samples and, when not strict, the reasons lines were skipped."""
    root = Path(root)
    labels = root / LABELS_FILE if root.is_dir() else root
    try:
        raw = labels.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{labels}: no such file (expected {LABELS_FILE} with relative/path<TAB>text lines)") from None
    except OSError as exc:
        raise DataError(f"{labels}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{labels}: not UTF-8 text (byte {exc.start})") from exc
    base = labels.parent
    samples: list[LabelledImage] = []
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        problem = None
        if "\t" not in line:
            problem = "no TAB between path and text"
        else:
            rel, label = line.split("\t", 1)
            if not rel:
                problem = "empty path"
            elif not label:
                problem = "empty text"
            elif charset is not None and charset.unknown_chars(label):
                problem = f"characters {charset.unknown_chars(label)!r} are not in the model's charset"
            elif check_files and not (base / rel).is_file():
                problem = f"image {rel} does not exist"
        if problem:
            reason = f"{labels}:{number}: {problem}"
            if strict:
                raise DataError(reason)
            skipped.append(reason)
            continue
        samples.append(LabelledImage(path=base / rel, file=rel, text=label, line=number, category=category_of(rel)))
    if not samples:
        raise DataError(
            f"{labels}: no usable labelled images" + (f" ({len(skipped)} lines skipped)" if skipped else "")
        )
    return samples, skipped
