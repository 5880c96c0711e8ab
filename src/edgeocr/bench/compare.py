"""Optimised models measured beside their source, for ``scripts/prune_compare.py`` and ``scripts/distill_compare.py``.

Accuracy, batch-1 latency and batched throughput all come from the recognition benchmark
(:func:`edgeocr.bench.harness.run_rec_benchmark`): every model is read through the same torch-free
runtime, one after another in one process, on the same crops with the same thread count, so the
figures compare directly (the full benchmark report is written too).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeocr.bench.harness import run_rec_benchmark
from edgeocr.bench.peers import EdgeOcrEngine
from edgeocr.core.atomic import atomic_output_dir, atomic_write_bytes
from edgeocr.core.errors import DataError
from edgeocr.data.labels import LABELS_FILE, read_labels

# scripts/ship_model.py renders the synthetic test set with this seed (never used in training).
TEST_SEED = 20261121
DEFAULT_TEST_DATA = Path("build") / f"synth-test-{TEST_SEED}-5000"


def add_measurement_arguments(parser: argparse.ArgumentParser, root: Path, name: str) -> None:
    """The options both comparison scripts share (training lines, held-out and test data, benchmark, output
    ``root/build/NAME``)."""
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and training lines")
    parser.add_argument("--batch-size", type=int, default=32, help="training lines per step")
    parser.add_argument("--val-lines", type=int, default=500, help="held-out synthetic lines scored after training")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the training lines")
    parser.add_argument("--test-data", type=Path, default=root / DEFAULT_TEST_DATA, help="test set labels folder")
    parser.add_argument("--test-lines", type=int, default=1000, help="its first lines used")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads in the benchmark")
    parser.add_argument("--batches", default="1,64", help="benchmark batch sizes")
    parser.add_argument("--out", type=Path, default=root / "build" / name)
    parser.add_argument("--reuse", action="store_true", help="keep models already trained in --out")


def first_lines(test_dir: Path, count: int, work_dir: Path) -> Path:
    """A labels folder holding the first ``count`` lines of ``test_dir`` (``test_dir`` itself if it has no more).

    The images are not copied: the new folder links to ``test_dir``'s category folders.
    """
    test_dir = Path(test_dir).absolute()
    if not (test_dir / LABELS_FILE).is_file():
        raise DataError(
            f"{test_dir / LABELS_FILE} is missing: render the synthetic test set first (python "
            "scripts/ship_model.py, or edgeocr synth lines --count 5000 "
            f"--seed {TEST_SEED} --out {test_dir})"
        )
    samples, _ = read_labels(test_dir)
    if count >= len(samples):
        return test_dir
    chosen = samples[:count]
    folder = Path(work_dir) / f"{test_dir.name}-first{count}"
    with atomic_output_dir(folder, overwrite=True) as tmp:
        for top in sorted({Path(s.file).parts[0] for s in chosen}):
            os.symlink(test_dir / top, tmp / top)
        atomic_write_bytes(tmp / LABELS_FILE, "".join(f"{s.file}\t{s.text}\n" for s in chosen).encode("utf-8"))
    return folder


def benchmark(
    models: dict[str, Path], data_dir: Path, threads: int, batches: Sequence[int], out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Each model's benchmark record (accuracy, latency, throughput), by label; the report goes to ``out_dir``."""
    engines = [EdgeOcrEngine(path, threads, max(batches), name=label) for label, path in models.items()]
    result = run_rec_benchmark(data_dir, engines, batches, threads=threads, out_dir=out_dir, progress=print)
    return {record["name"]: record for record in result["engines"]}


def without_predictions(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The benchmark records less their per-line predictions (the benchmark's own results.json keeps them)."""
    return {name: {k: v for k, v in record.items() if k != "predictions"} for name, record in records.items()}


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def write_outputs(out_dir: Path, name: str, data: dict[str, Any], markdown: str) -> None:
    """``out_dir/NAME.json`` and ``out_dir/NAME.md``, each written atomically."""
    atomic_write_bytes(Path(out_dir) / f"{name}.json", (json.dumps(data, indent=1) + "\n").encode("utf-8"))
    atomic_write_bytes(Path(out_dir) / f"{name}.md", markdown.encode("utf-8"))
