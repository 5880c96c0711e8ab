"""The line images ``edgeocr optimize`` calibrates on and scores with, prepared as the runtime prepares them.

* Calibration (``--calib``): a ``labels.tsv`` folder (labels are ignored), a folder of images (searched
  recursively), or ``synthetic[:N]``: N synthetic lines (default :data:`DEFAULT_CALIB_LINES`) rendered
  now with seed :data:`CALIB_SEED`, a seed no training run or test set uses.
* Evaluation (``--eval``): ``labels.tsv`` folders. Without one, :data:`DEFAULT_EVAL_LINES` synthetic lines
  of seed :data:`EVAL_SEED` are rendered: the first lines of the synthetic test set of
  ``scripts/ship_model.py`` (same seed, sample ``i`` depends only on the seed and ``i``).

Calibration lines are prepared as :class:`~edgeocr.runtime.recognizer.OnnxRecognizer` prepares them
(height, background padding, normalisation), sorted by padded width, each batch padded to its widest
member. The input width is dynamic, so the activation ranges are seen over the widths the model meets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeocr.core.errors import DataError, ImageError
from edgeocr.core.images import read_image
from edgeocr.core.lineimage import pad_and_normalise, padded_width, to_line_strip
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.labels import LABELS_FILE, read_labels
from edgeocr.runtime.sources import IMAGE_SUFFIXES

SYNTHETIC = "synthetic"
CALIB_SEED = 424242  # far from the training seeds (0, 1000003) and the test seed
DEFAULT_CALIB_LINES = 256
EVAL_SEED = 20261121  # scripts/ship_model.py TEST_SEED: the synthetic test set's first lines
DEFAULT_EVAL_LINES = 500
CALIB_BATCH = 16


@dataclass(frozen=True)
class LineSet:
    """A folder of labelled lines to score on, with the name the report card gives it."""

    name: str
    folder: Path
    synthetic: bool  # rendered by this run (the default eval set), not given by the user
    gates: bool = True  # False: scored for the report card only (--report-data), never deciding anything


def parse_synthetic(spec: str, default: int) -> int | None:
    """N for ``synthetic`` / ``synthetic:N``; None when ``spec`` is a path."""
    if spec != SYNTHETIC and not spec.startswith(SYNTHETIC + ":"):
        return None
    count_text = spec.partition(":")[2] or str(default)
    try:
        count = int(count_text)
    except ValueError:
        raise DataError(f"--calib {spec}: expected synthetic or synthetic:N with N a whole number") from None
    if count < 1:
        raise DataError(f"--calib {spec}: the number of synthetic lines must be at least 1")
    return count


def render_lines(count: int, seed: int, out: Path) -> Path:
    """``count`` synthetic lines of ``seed`` written to ``out`` (labels.tsv folder), as ``edgeocr synth lines``."""
    from edgeocr.synth.dataset import SynthJob, synthesize

    synthesize(SynthJob(kind="lines", count=count, seed=seed, out=out, workers=1), progress=False)
    return out


def _image_files(folder: Path) -> list[Path]:
    if (folder / LABELS_FILE).is_file():
        samples, _ = read_labels(folder, strict=True)
        return [s.path for s in samples]
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_calibration(spec: str) -> list[Path] | None:
    """The image files of a ``--calib`` folder (None for ``synthetic[:N]``); DataError when there are none."""
    if parse_synthetic(spec, DEFAULT_CALIB_LINES) is not None:
        return None
    folder = Path(spec)
    if not folder.is_dir():
        raise DataError(
            f"--calib {spec}: no such folder (give a folder of line images, a labels.tsv folder, or synthetic[:N])"
        )
    files = _image_files(folder)
    if not files:
        raise DataError(f"--calib {spec}: the folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def calibration_images(spec: str, work_dir: Path, limit: int = DEFAULT_CALIB_LINES) -> tuple[list[np.ndarray], str]:
    """The calibration images of ``--calib spec`` (at most ``limit``, spread evenly) and a description."""
    files = check_calibration(spec)
    if files is None:
        count = parse_synthetic(spec, DEFAULT_CALIB_LINES)
        files = _image_files(render_lines(count, CALIB_SEED, work_dir / "calib-synthetic"))
        description = f"{count} synthetic lines (seed {CALIB_SEED})"
    else:
        description = spec
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    images = []
    for path in files:
        try:
            images.append(read_image(path))
        except ImageError as exc:
            raise DataError(f"--calib: {exc}") from exc
    return images, f"{description} ({len(images)} lines used)"


def network_batches(
    images: Sequence[np.ndarray],
    cfg: RecognizerConfig,
    batch_size: int = CALIB_BATCH,
) -> list[np.ndarray]:
    """Network inputs ``[N, 1, H, W]`` float32 for ``images``: width-sorted batches, each padded to its widest."""
    strips = sorted((to_line_strip(image, cfg) for image in images), key=lambda s: s.shape[1])
    batches = []
    for start in range(0, len(strips), batch_size):
        group = strips[start : start + batch_size]
        width = padded_width(group[-1].shape[1], cfg)
        batches.append(np.stack([pad_and_normalise(strip, cfg, width) for strip in group]))
    return batches


class BatchFeed:
    """ONNX Runtime's calibration-reader protocol (``get_next`` / ``rewind``) over fixed input batches."""

    def __init__(self, batches: Sequence[np.ndarray], input_name: str) -> None:
        self.batches = list(batches)
        self.input_name = input_name
        self._iterator: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iterator, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._iterator = iter(self.batches)


def eval_sets(folders: Sequence[Path], work_dir: Path, report_only: Sequence[Path] = ()) -> list[LineSet]:
    """The ``--eval`` folders (or the default synthetic set), then the ``--report-data`` folders, each
    checked now (labels.tsv present, every image there). Only the first kind gates int8."""
    if folders:
        sets = []
    else:
        folder = render_lines(DEFAULT_EVAL_LINES, EVAL_SEED, work_dir / "eval-synthetic")
        sets = [LineSet(f"synthetic-{DEFAULT_EVAL_LINES} (seed {EVAL_SEED})", folder, synthetic=True)]
    for folder, gates in [*((f, True) for f in folders), *((f, False) for f in report_only)]:
        read_labels(folder, strict=True)  # DataError naming labels.tsv:LINE now, before any optimisation
        name = folder.name if folder.name not in {s.name for s in sets} else str(folder)
        sets.append(LineSet(name if gates else f"{name} (report only)", Path(folder), synthetic=False, gates=gates))
    return sets
