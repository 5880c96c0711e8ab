"""Static int8 quantisation of an exported line detector, calibrated on scenes, its stem and head kept float.

``edgeocr optimize-detector DETECTOR --calibration SCENES --out DIR`` writes ``DIR/model.onnx`` and its
sidecar: the same configuration (input size, thresholds) bound to the quantised bytes, with an
``optimization`` note naming the source's checksum and the settings. ONNX Runtime's static
quantisation (QDQ, per-channel int8 weights, activation ranges from the calibration scenes by
min/max, :mod:`edgeocr.optimize.quantize`) runs on every node except those under
:data:`KEEP_FLOAT`: the first convolutions, which see raw pixels, and the probability head, whose
output is thresholded at 0.3 and 0.5 and so decides which boxes exist. On PP-OCRv6's detector
quantising everything cost 3.6 points of detection hmean on 80 synthetic validation scenes; with
those layers in float it cost 0.5 (docs/models/detector-default.md). Calibration scenes are
prepared as the runtime prepares them (the sidecar's resize and normalisation) and padded to one
size, so the ranges are those the runtime meets.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.detection import prepare_image, stack_inputs
from edgeocr.core.detector_config import load_detector_sidecar
from edgeocr.core.errors import DataError
from edgeocr.core.images import load_image
from edgeocr.core.sidecar import OptimizationNote, bound_json, sha256_hex, sidecar_path
from edgeocr.data.scene_annotations import read_scene_annotations
from edgeocr.optimize.quantize import Int8Settings, prepare_for_quantisation, quantize_int8

#: Node-name prefixes of our exported detectors that stay float (see the module).
KEEP_FLOAT = ("/prob_head", "/backbone/stem", "/backbone/conv1")
SETTINGS = Int8Settings(quant_format="qdq", activations="uint8", per_channel=True, calibration="minmax")
MAX_CALIBRATION_SCENES = 64


def calibration_batches(model: Path, scenes: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` scenes of an annotated folder (or a folder of images), prepared for ``model``,
    each a ``[1, 3, H, W]`` batch padded to the largest (the ranges then cover the runtime's padding too)."""
    cfg = load_detector_sidecar(sidecar_path(model)).config
    if (scenes / "annotations.jsonl").is_file():
        _, records, _ = read_scene_annotations(scenes, strict=True)
        paths = [r.path for r in records]
    else:
        paths = sorted(p for p in scenes.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not paths:
        raise DataError(f"{scenes}: no calibration image")
    prepared = [prepare_image(load_image(path), cfg) for path in paths[:count]]
    padded = stack_inputs(prepared)
    return [padded[i : i + 1] for i in range(len(prepared))]


def quantize_detector(
    model: Path | str, scenes: Path | str, out: Path | str, count: int = 24, keep_float: Sequence[str] = KEEP_FLOAT
) -> Path:
    """Write ``out/model.onnx`` (int8) and ``out/model.json``; return the model's path."""
    model, scenes, out = Path(model), Path(scenes), Path(out)
    sidecar = load_detector_sidecar(sidecar_path(model))
    batches = calibration_batches(model, scenes, min(count, MAX_CALIBRATION_SCENES))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeocr-detq-") as tmp:
        prepared = prepare_for_quantisation(model, Path(tmp) / "prepared.onnx")
        nodes = onnx.load(str(prepared)).graph.node
        excluded = [n.name for n in nodes if n.name.startswith(tuple(keep_float))]
        quantised = quantize_int8(
            prepared, Path(tmp) / "model.onnx", batches, sidecar.input_name, SETTINGS, exclude=excluded
        )
        data = quantised.read_bytes()
    target = out / "model.onnx"
    atomic_write_bytes(target, data)
    note = OptimizationNote(
        source=str(model),
        source_sha256=sha256_hex(model.read_bytes()),
        steps=("int8",),
        details={
            "format": SETTINGS.quant_format,
            "activations": SETTINGS.activations,
            "per_channel": SETTINGS.per_channel,
            "calibration": f"{SETTINGS.calibration} on {len(batches)} scenes of {scenes}",
            "kept_float": list(keep_float),
        },
    )
    fields = sidecar.model_dump(mode="json")
    fields.update(onnx_file=target.name, onnx_sha256=sha256_hex(data), optimization=note.model_dump(mode="json"))
    fields.pop("settings_sha256", None)
    atomic_write_bytes(sidecar_path(target), bound_json(fields).encode())
    load_detector_sidecar(sidecar_path(target))  # what was written loads and binds
    return target
