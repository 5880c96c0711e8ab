"""PP-OCRv6 small's text detector imported from the rapidocr wheel: parity with the package's own ONNX
file through ONNX Runtime (probability maps and boxes), our export of it, fine-tuning from it with a
term toward the frozen source, distillation into our own architecture, and the errors a user meets.
Nothing here skips: a missing package or a parity mismatch fails."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeocr.cli import main as cli
from edgeocr.core.detection import prepare_image
from edgeocr.core.errors import ModelError
from edgeocr.data.scene_annotations import read_scene_annotations
from edgeocr.models import pretrained_detector
from edgeocr.models.detector import build_detector, default_detector_config
from edgeocr.models.detector_export import load_detector_weights
from edgeocr.models.pretrained import source_file
from edgeocr.models.pretrained_detector import import_detector, load_detector_source, source_state
from edgeocr.models.sources import DETECTOR_SOURCES
from edgeocr.runtime.detector import OnnxDetector, lines_from_probability_map
from edgeocr.train.detector_trainer import DetectorTrainConfig, run_detector_training
from test_detector import tiny_config

REPO = Path(__file__).resolve().parents[1]
SCENES = REPO / "samples" / "scenes"
PARITY_TOLERANCE = 1e-3
SOURCE = DETECTOR_SOURCES["ppocrv6-det"]

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def source_session() -> ort.InferenceSession:
    """The package's own PP-OCRv6 small detector, run by ONNX Runtime as RapidOCR runs it."""
    return ort.InferenceSession(str(source_file(SOURCE)), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    return load_detector_source("ppocrv6-det")


@pytest.fixture(scope="module")
def sample_inputs() -> list:
    """The bundled sample scenes, prepared as the runtime prepares them (long side 640, PP-OCR's normalisation)."""
    cfg = default_detector_config(SOURCE.arch, max_side=640)
    _, records, _ = read_scene_annotations(SCENES)
    assert len(records) >= 3
    return [prepare_image(cv2.imread(str(r.path)), cfg) for r in records]


def test_the_imported_network_gives_the_source_probability_maps_on_random_inputs(network, source_session) -> None:
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 96, 160), (1, 3, 320, 224)]:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        (expected,) = source_session.run(None, {"x": x})
        with torch.no_grad():
            got = network(torch.from_numpy(x)).numpy()
        assert got.shape == expected.shape == (shape[0], 1, shape[2], shape[3])
        assert np.abs(got - expected).max() < PARITY_TOLERANCE


def test_the_imported_network_finds_the_same_boxes_as_the_source_on_the_sample_scenes(
    network, source_session, sample_inputs
) -> None:
    cfg = default_detector_config(SOURCE.arch, max_side=640)
    found = 0
    for prepared in sample_inputs:
        x = prepared.tensor[None]
        (expected,) = source_session.run(None, {"x": x})
        with torch.no_grad():
            got = network(torch.from_numpy(x)).numpy()
        assert np.abs(got - expected).max() < PARITY_TOLERANCE
        ours = lines_from_probability_map(got[0, 0], prepared, cfg)
        theirs = lines_from_probability_map(expected[0, 0], prepared, cfg)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert np.abs(a.poly - b.poly).max() < 0.5  # the same box, to a fraction of a pixel
        found += len(ours)
    assert found >= 10  # the sample scenes hold 14 lines: the source finds most of them


def test_our_export_runs_like_the_source_and_carries_its_provenance(
    tmp_path: Path, source_session, sample_inputs
) -> None:
    path, cfg, source = import_detector(tmp_path / "v6", max_side=640)
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["config"]["arch"] == "ppocrv6_det_small" and sidecar["config"]["max_side"] == 640
    assert sidecar["derived_from"]["source_sha256"] == SOURCE.sha256
    assert sidecar["derived_from"]["licence"] == "Apache-2.0"
    notice = REPO / "src" / sidecar["derived_from"]["notice"]
    assert notice.is_file() and "modification notice" in notice.read_text(encoding="utf-8")
    detector = OnnxDetector(path)  # checksum and signature verified
    for prepared in sample_inputs:
        (expected,) = source_session.run(None, {"x": prepared.tensor[None]})
        got = detector.probability_maps(prepared.tensor[None])
        assert np.abs(got - expected[:, 0]).max() < PARITY_TOLERANCE
    image = cv2.imread(str(next((SCENES / "images").iterdir())))
    lines = detector.detect(image)
    prepared = prepare_image(image, cfg)
    (expected,) = source_session.run(None, {"x": prepared.tensor[None]})
    assert len(lines) == len(lines_from_probability_map(expected[0, 0], prepared, cfg)) > 0


def test_ppocrv4_mobile_detector_is_imported_with_parity_too(tmp_path: Path) -> None:
    source = DETECTOR_SOURCES["ppocrv4-det"]
    session = ort.InferenceSession(str(source_file(source)), providers=["CPUExecutionProvider"])
    network = load_detector_source("ppocrv4-det")  # convolutions, batch norms and affine blocks by run order
    x = np.random.default_rng(2).uniform(-1, 1, (2, 3, 160, 224)).astype(np.float32)
    (expected,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        assert np.abs(network(torch.from_numpy(x)).numpy() - expected).max() < PARITY_TOLERANCE
    path, cfg, _ = import_detector(tmp_path / "v4", "ppocrv4-det", max_side=640)
    assert cfg.arch == "ppocrv4_det_mobile"
    detector = OnnxDetector(path)
    assert np.abs(detector.probability_maps(x) - expected[:, 0]).max() < PARITY_TOLERANCE
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["derived_from"]["source_sha256"] == source.sha256
    assert (REPO / "src" / sidecar["derived_from"]["notice"]).is_file()


def test_the_import_command_writes_a_detector(tmp_path: Path) -> None:
    assert cli(["import-detector", "ppocrv6-det", "--out", str(tmp_path / "d"), "--max-side", "320"]) == 0
    assert OnnxDetector(tmp_path / "d" / "model.onnx").config.max_side == 320


def test_a_mismatched_network_or_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    import onnx

    model = onnx.load(str(source_file(SOURCE)))
    with pytest.raises(ModelError, match="convolutions"):
        source_state(model, build_detector("db_tiny"))  # another architecture: the mapping does not fit
    tampered = tmp_path / "PP-OCRv6_det_small.onnx"
    data = bytearray(source_file(SOURCE).read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained_detector, "source_file", lambda source: tampered)
    with pytest.raises(ModelError, match="refused"):
        load_detector_source("ppocrv6-det")


def _tiny_run(out: Path, **overrides) -> DetectorTrainConfig:
    """test_detector's tiny run, smaller still: two steps of two 128-px scenes."""
    return tiny_config(out, **{"scenes_per_epoch": 4, "val_scenes": 2, "batch_size": 2, "max_steps": 2, **overrides})


def test_fine_tuning_the_imported_detector_toward_the_source_exports_a_derived_model(tmp_path: Path) -> None:
    cfg = _tiny_run(
        tmp_path / "ft",
        arch="ppocrv6_det_small",
        init="pretrained",
        teacher="ppocrv6-det",
        distill_weight=1.0,
        freeze_backbone=True,
        lr=1e-2,  # large enough that two steps visibly move what is trained
    )
    path = run_detector_training(cfg)
    _, tuned_state = load_detector_weights(path.with_suffix(".pt"))
    source_state_dict = load_detector_source("ppocrv6-det").state_dict()
    backbone = [k for k in source_state_dict if k.startswith("backbone.")]
    neck = [k for k in source_state_dict if k.startswith("neck.") and k.endswith("weight")]
    assert backbone and neck
    # frozen: the backbone is the source's (to the float16 rounding of model.pt); the neck has moved
    for key in backbone:
        assert torch.allclose(tuned_state[key], source_state_dict[key].half().float(), atol=1e-6), key
    assert any(not torch.allclose(tuned_state[k], source_state_dict[k].half().float(), atol=1e-4) for k in neck)
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["config"]["arch"] == "ppocrv6_det_small"
    assert sidecar["derived_from"]["source"] == "ppocrv6-det"
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics  # the run recorded its figures
    detector = OnnxDetector(path)
    x = np.zeros((1, 3, 64, 64), np.float32)
    assert detector.probability_maps(x).shape == (1, 64, 64)
    # The fine-tuned network stays near the source after two small steps (it starts from it).
    (source,) = ort.InferenceSession(str(source_file(SOURCE)), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.random.default_rng(1).uniform(-1, 1, (1, 3, 96, 96)).astype(np.float32)}
    )
    tuned = detector.probability_maps(np.random.default_rng(1).uniform(-1, 1, (1, 3, 96, 96)).astype(np.float32))
    assert np.abs(tuned - source[:, 0]).mean() < 0.2


def test_distilling_the_imported_detector_into_our_architecture(tmp_path: Path) -> None:
    path = run_detector_training(_tiny_run(tmp_path / "kd", arch="db_tiny", teacher="ppocrv6-det", distill_weight=1.0))
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["config"]["arch"] == "db_tiny" and sidecar["derived_from"] is None  # its weights are ours


def test_bad_fine_tuning_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs distill_weight"):
        _tiny_run(tmp_path / "a", arch="db_tiny", teacher="ppocrv6-det")
    with pytest.raises(ValueError, match="needs a teacher"):
        _tiny_run(tmp_path / "b", arch="db_tiny", distill_weight=1.0)
    with pytest.raises(ValueError, match="no pretrained source"):
        _tiny_run(tmp_path / "c", arch="db_tiny", init="pretrained")
