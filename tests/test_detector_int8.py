"""``edgeocr optimize-detector``: int8 of a detector, calibrated on scenes, its stem and head kept float."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from edgeocr.cli import main
from edgeocr.core.images import load_image
from edgeocr.core.sidecar import sha256_hex
from edgeocr.data.scene_annotations import read_scene_annotations
from edgeocr.measure.detection_metrics import DetectionCounts, count_detections
from edgeocr.runtime.detector import OnnxDetector
from edgeocr.runtime.models import resolve_detector

SCENES = Path(__file__).resolve().parents[1] / "samples" / "scenes"


def _counts(detector: OnnxDetector) -> DetectionCounts:
    _, records, _ = read_scene_annotations(SCENES)
    counts = DetectionCounts()
    for record in records:
        found = [line.poly for line in detector.detect(load_image(record.path))]
        counts += count_detections(found, record.polys, record.ignore, record.exhaustive)
    return counts


def test_a_detector_quantised_to_int8_keeps_its_settings_and_finds_the_lines(tmp_path: Path) -> None:
    source = resolve_detector("fast")
    assert main(["optimize-detector", "fast", "--calibration", str(SCENES), "--out", str(tmp_path / "q")]) == 0
    path = tmp_path / "q" / "model.onnx"
    assert path.stat().st_size < source.stat().st_size
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["optimization"]["steps"] == ["int8"]
    assert sidecar["optimization"]["source_sha256"] == sha256_hex(source.read_bytes())
    assert sidecar["config"] == json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))["config"]
    graph = onnx.load(str(path)).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    head = [n for n in graph.node if n.name.startswith("/prob_head") and n.op_type in ("Conv", "ConvTranspose")]
    assert head and all(
        not any(i.endswith("_DequantizeLinear_Output") for i in n.input[1:2]) for n in head
    )  # the head's weights stay float
    float_counts, int8_counts = _counts(OnnxDetector(source)), _counts(OnnxDetector(path))
    assert int8_counts.tp >= float_counts.tp - 1  # the sample scenes' 14 lines: at most one lost


def test_optimize_detector_refuses_a_folder_without_images(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["optimize-detector", "fast", "--calibration", str(tmp_path / "empty"), "--out", str(tmp_path / "q")])
    assert code == 2 and "no calibration image" in capsys.readouterr().err
    assert not (tmp_path / "q" / "model.onnx").exists()
