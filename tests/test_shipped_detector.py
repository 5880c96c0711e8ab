"""The line detectors that ship in the package: present, small, self-describing, usable without torch.

``default`` is PP-OCRv6 small's detector imported from the rapidocr wheel (it finds lines on real
photos); ``fast`` is our own DB detector trained on synthetic scenes (15 ms frames)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeocr.core.errors import ModelError
from edgeocr.core.images import load_image
from edgeocr.core.sidecar import sha256_hex
from edgeocr.data.scene_annotations import read_scene_annotations
from edgeocr.measure.detection_metrics import DetectionCounts, count_detections
from edgeocr.runtime.detector import OnnxDetector
from edgeocr.runtime.models import resolve_detector, shipped_detectors

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = {"default": 4 * 1024 * 1024, "default-fp32": 11 * 1024 * 1024, "fast": 5 * 1024 * 1024}
ARCHS = {"default": "ppocrv6_det_small", "default-fp32": "ppocrv6_det_small", "fast": "db_s"}
CARDS = {"default": "detector-default.md", "default-fp32": "detector-default.md", "fast": "detector-fast.md"}
# The bundled sample scenes are three synthetic scenes of seed 777, which no training run used; `fast`
# found 11 of their 14 lines and no false box (hmean 0.88). A regression floor on three images, not a
# measurement: the model cards' figures come from held-out synthetic scenes and realdev.
MIN_SAMPLE_HMEAN = {"default": 0.75, "default-fp32": 0.75, "fast": 0.85}


@pytest.mark.parametrize("name", ["default", "default-fp32", "fast"])
def test_shipped_detectors_come_with_their_sidecar_and_model_card(name: str) -> None:
    assert name in shipped_detectors()
    path = resolve_detector(name)
    assert path.stat().st_size <= MAX_BYTES[name]
    detector = OnnxDetector(path)  # verifies the sidecar's checksum and signature
    assert detector.config.arch == ARCHS[name]
    assert (ROOT / "docs" / "models" / CARDS[name]).is_file()


def test_the_default_detector_carries_its_provenance() -> None:
    data = json.loads(resolve_detector("default").with_suffix(".json").read_text(encoding="utf-8"))
    assert data["derived_from"]["source"] == "ppocrv6-det" and data["derived_from"]["licence"] == "Apache-2.0"
    assert (ROOT / "src" / data["derived_from"]["notice"]).is_file()
    # int8 of default-fp32: the note names the float model's bytes, the settings are the same
    fp32 = resolve_detector("default-fp32")
    assert data["optimization"]["steps"] == ["int8"]
    assert data["optimization"]["source_sha256"] == sha256_hex(fp32.read_bytes())
    assert data["config"] == json.loads(fp32.with_suffix(".json").read_text(encoding="utf-8"))["config"]


def test_the_shipped_detector_sidecar_is_bound_and_an_edited_copy_is_refused(tmp_path: Path) -> None:
    from edgeocr.core.rebind import rebind_model
    from edgeocr.core.sidecar import settings_sha256

    shipped = resolve_detector("default")
    data = json.loads(shipped.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["format_version"] == 2 and data["settings_sha256"] == settings_sha256(data)
    copy = tmp_path / "default.onnx"
    copy.write_bytes(shipped.read_bytes())
    for block, value in (("max_side", 1280), ("box_threshold", 0.2), ("mean", [0.4, 0.5, 0.5])):
        edited = {**data, "config": {**data["config"], block: value}}
        copy.with_suffix(".json").write_text(json.dumps(edited, indent=2))
        try:
            OnnxDetector(copy)
        except ModelError as exc:
            message = str(exc)
            assert "settings were edited after export" in message and "config block" in message, message
            assert str(copy.with_suffix(".json")) in message and "--rebind" in message
        else:
            raise AssertionError(f"a detector sidecar with an edited {block} must be refused")
    # a deliberate change (docs/models/detector-default.md: another max_side) is bound again and then loads
    rebind_model(copy)
    assert OnnxDetector(copy).config.mean == (0.4, 0.5, 0.5)


def test_an_unknown_detector_name_lists_the_shipped_ones() -> None:
    try:
        resolve_detector("nope")
    except ModelError as exc:
        assert "'nope'" in str(exc) and "default" in str(exc)
    else:
        raise AssertionError("an unknown detector name must raise ModelError")


@pytest.mark.parametrize("name", ["default", "default-fp32", "fast"])
def test_shipped_detectors_find_the_lines_of_the_sample_scenes(name: str) -> None:
    _, records, _ = read_scene_annotations(ROOT / "samples" / "scenes")
    detector = OnnxDetector(resolve_detector(name))
    counts = DetectionCounts()
    for record in records:
        found = [line.poly for line in detector.detect(load_image(record.path))]
        counts += count_detections(found, record.polys, record.ignore, record.exhaustive)
    assert counts.tp > 0 and counts.hmean >= MIN_SAMPLE_HMEAN[name], counts.as_dict()


def test_the_cli_reads_a_scene_with_the_shipped_detector_without_torch(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edgeocr.cli import app\n"
        "sys.argv = ['edgeocr', 'read', sys.argv[1], '--threads', '1', '--json', sys.argv[2]]\n"
        "app()\n"
    )
    image = ROOT / "samples" / "scenes" / "images" / "00000000.jpg"
    out = subprocess.run(
        [sys.executable, "-c", code, str(image), str(tmp_path / "reads.json")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    (result,) = json.loads((tmp_path / "reads.json").read_text())["results"]
    assert result["error"] is None and result["lines"]
    assert all(len(line["poly"]) == 4 for line in result["lines"])
    assert any(line["text"] for line in result["lines"])
