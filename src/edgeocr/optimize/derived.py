"""Models an optimisation step writes: their files, and ONNX bytes saved with a sidecar of their own.

Below :mod:`edgeocr.optimize.pipeline` and the precision study, which both write derived models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx

import edgeocr
from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.sidecar import ModelSidecar, OptimizationNote, sha256_hex, sidecar_path


@dataclass(frozen=True)
class StepModel:
    """A model some step produced: its main file, format, and every file that counts towards its size."""

    path: Path
    kind: Literal["onnx", "openvino", "tensorrt"]
    files: tuple[Path, ...]
    precision: str = "fp32"  # TensorRT build precision

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def onnx_model(path: Path) -> StepModel:
    """An ONNX file as a step's model."""
    return StepModel(path, "onnx", (path,))


def save_derived_onnx(source: Path, out: Path, source_sidecar: ModelSidecar, note: OptimizationNote) -> StepModel:
    """Write ``source``'s ONNX bytes to ``out`` with a sidecar of their own checksum, opset and the note."""
    data = source.read_bytes()
    opset = next(
        (o.version for o in onnx.load_from_string(data).opset_import if o.domain in ("", "ai.onnx")),
        source_sidecar.opset,
    )
    # The source's settings, bound again (to_json) to these bytes and this note.
    sidecar = ModelSidecar(
        **{
            **source_sidecar.model_dump(exclude={"settings_sha256"}),
            "edgeocr_version": edgeocr.__version__,
            "onnx_file": out.name,
            "onnx_sha256": sha256_hex(data),
            "opset": opset,
            "optimization": note,
        }
    )
    atomic_write_bytes(out, data)
    atomic_write_bytes(sidecar_path(out), sidecar.to_json().encode("utf-8"))
    return onnx_model(out)
