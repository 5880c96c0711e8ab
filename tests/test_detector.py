"""Text-line detector: network shapes, DB targets, post-processing, metrics, crops, training, export, runtime.

Training runs use ``db_tiny``, a few steps and a handful of small synthetic scenes: they check the
plumbing (checkpoints, resume, export, the ONNX graph, the runtime), not that the model learns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("lightning")

import torch  # noqa: E402

from edgeocr.core.crops import crop_line, order_quad, quad_angle  # noqa: E402
from edgeocr.core.detection import boxes_from_probability_map, prepare_image  # noqa: E402
from edgeocr.core.errors import EdgeOCRError, ModelError  # noqa: E402
from edgeocr.data.scene_dataset import (  # noqa: E402
    Augmentation,
    DetectionSamples,
    InMemorySamples,
    SceneFolder,
    SceneItem,
    make_db_targets,
    shrink_distance,
)
from edgeocr.measure.detection_metrics import count_detections, match_polygons, polygon_iou  # noqa: E402
from edgeocr.models.detector import build_detector, default_detector_config  # noqa: E402
from edgeocr.models.detector_export import load_detector_weights  # noqa: E402
from edgeocr.runtime.detector import DetectedLine, OnnxDetector, reading_order  # noqa: E402
from edgeocr.synth.dataset import SynthJob, synthesize  # noqa: E402
from edgeocr.train.detector_trainer import DetectorTrainConfig, main, run_detector_training  # noqa: E402

torch.set_num_threads(2)
TINY = default_detector_config("db_tiny")


def rect(cx: float, cy: float, w: float, h: float, angle: float = 0.0) -> np.ndarray:
    return cv2.boxPoints(((cx, cy), (w, h), angle)).astype(np.float32)


def tiny_config(out: Path, **overrides) -> DetectorTrainConfig:
    values = dict(
        arch="db_tiny",
        input_size=128,
        scenes_per_epoch=8,
        val_scenes=4,
        batch_size=4,
        epochs=3,
        max_steps=3,
        workers=0,
        accelerator="cpu",
        checkpoint_every_n_steps=1,
        progress_bar=False,
        out=out,
    )
    return DetectorTrainConfig(**{**values, **overrides})


# --- network ------------------------------------------------------------------------------------


def test_tiny_detector_maps_have_the_input_size() -> None:
    model = build_detector("db_tiny").eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        prob = model(images)
        logits, thresh = model.forward_train(images)
    assert prob.shape == logits.shape == thresh.shape == (2, 1, 64, 96)
    assert 0.0 <= float(prob.min()) and float(prob.max()) <= 1.0
    assert torch.allclose(prob, torch.sigmoid(logits))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 60, 96))


def test_small_detector_fits_the_size_budget() -> None:
    model = build_detector("db_s")
    exported = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("thresh_head"))
    assert exported * 4 < 2_000_000  # float32 bytes of what the ONNX graph keeps


# --- DB targets ---------------------------------------------------------------------------------


def test_targets_shrink_each_line_inside_its_quad() -> None:
    quad = rect(100, 50, 120, 24)
    targets = make_db_targets([quad], [False], 100, 200)
    distance = shrink_distance(quad, 0.4)
    assert distance == pytest.approx(120 * 24 * 0.84 / (2 * 144))
    inside = np.zeros((100, 200), np.uint8)
    cv2.fillPoly(inside, [np.round(quad).astype(np.int32)], 1)
    assert targets.prob[50, 100] == 1.0
    assert targets.prob[inside == 0].max() == 0.0  # nothing outside the quad
    ys, xs = np.nonzero(targets.prob)
    assert abs((ys.max() - ys.min() + 1) - (24 - 2 * distance)) <= 1.0  # shrunk by D on both sides
    assert abs((xs.max() - xs.min() + 1) - (120 - 2 * distance)) <= 1.0
    assert targets.prob_mask.min() == 1.0
    # Threshold map: high on the border, the floor far from it, learned only near the line.
    assert targets.thresh[38, 100] == pytest.approx(0.7, abs=0.03)  # on the top edge (y = 38)
    assert targets.thresh[50, 100] == pytest.approx(0.3)
    assert targets.thresh_mask[38 - int(distance) + 1, 100] == 1.0 and targets.thresh_mask[5, 5] == 0.0


def test_ignored_and_tiny_lines_are_masked_and_non_exhaustive_images_count_only_near_labels() -> None:
    keep, ignored, tiny = rect(60, 30, 80, 20), rect(60, 80, 80, 20), rect(160, 80, 30, 2)
    targets = make_db_targets([keep, ignored, tiny], [False, True, False], 120, 200)
    assert targets.prob[80, 60] == 0.0 and targets.prob_mask[80, 60] == 0.0
    assert targets.prob_mask[80, 160] == 0.0 and targets.prob[80, 160] == 0.0
    assert targets.prob[30, 60] == 1.0 and targets.prob_mask[5, 190] == 1.0
    partial = make_db_targets([keep], [False], 120, 200, exhaustive=False)
    assert partial.prob_mask[30, 60] == 1.0 and partial.prob_mask[100, 180] == 0.0


# --- post-processing ----------------------------------------------------------------------------


def paint_core(prob: np.ndarray, line: tuple, value: float, ratio: float = 0.4) -> None:
    """Set the pixels whose centres lie in the line's rotated rectangle shrunk by DB's offset."""
    (cx, cy), (w, h), angle = line
    d = w * h * (1 - ratio**2) / (2 * (w + h))
    ys, xs = np.mgrid[0 : prob.shape[0], 0 : prob.shape[1]]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    u, v = (xs - cx) * c + (ys - cy) * s, -(xs - cx) * s + (ys - cy) * c  # the rectangle's own axes
    prob[(np.abs(u) <= w / 2 - d) & (np.abs(v) <= h / 2 - d)] = value


def test_probability_map_gives_back_the_rotated_boxes_of_its_cores() -> None:
    # Centres between pixel centres, so that no pixel sits exactly on a core's edge.
    lines = {
        "level": ((120.5, 40.5), (200, 24), 0.0),
        "tilted": ((150.5, 140.5), (160, 20), 20.0),
        "vertical": ((330.5, 150.5), (24, 180), 0.0),
    }
    prob = np.zeros((260, 400), np.float32)
    for line in lines.values():
        paint_core(prob, line, 0.9)
    cv2.circle(prob, (40, 220), 6, 0.4, -1)  # above binary_threshold, below box_threshold: dropped
    prob[250, 380] = 0.95  # a one-pixel speck: too small
    boxes = boxes_from_probability_map(prob, TINY)
    assert len(boxes) == 3
    for name, line in lines.items():
        truth = cv2.boxPoints(line)
        quad, score = max(boxes, key=lambda b: polygon_iou(b[0], truth))
        assert polygon_iou(quad, truth) > 0.95, name
        assert score == pytest.approx(0.9, abs=1e-4)
        width, height = np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[1])
        expected = sorted(line[1]) if name == "vertical" else sorted(line[1], reverse=True)
        assert abs(width - expected[0]) < 1.5 and abs(height - expected[1]) < 1.5, (name, width, height)
    vertical = max(boxes, key=lambda b: polygon_iou(b[0], cv2.boxPoints(lines["vertical"])))[0]
    assert np.linalg.norm(vertical[2] - vertical[1]) > 1.5 * np.linalg.norm(vertical[1] - vertical[0])
    tilted = max(boxes, key=lambda b: polygon_iou(b[0], cv2.boxPoints(lines["tilted"])))[0]
    assert quad_angle(tilted) == pytest.approx(20.0, abs=2.0)
    # DB's fixed ratio gives back much less than the line from a perfect core.
    fixed = boxes_from_probability_map(prob, TINY.model_copy(update={"unclip_ratio": 1.5}))
    level = max(fixed, key=lambda b: polygon_iou(b[0], cv2.boxPoints(lines["level"])))[0]
    assert np.linalg.norm(level[2] - level[1]) < 20


def test_lines_are_in_reading_order() -> None:
    def line(x: float, y: float) -> DetectedLine:
        return DetectedLine(poly=rect(x, y, 40, 10), score=1.0, angle=0.0)

    ordered = reading_order([line(200, 52), line(50, 100), line(60, 48), line(300, 50)])
    assert [(float(ln.poly[:, 0].mean()), float(ln.poly[:, 1].mean())) for ln in ordered] == [
        (60, 48),
        (200, 52),
        (300, 50),
        (50, 100),
    ]


# --- metrics ------------------------------------------------------------------------------------


def test_polygon_iou() -> None:
    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    assert polygon_iou(square, square) == pytest.approx(1.0)
    assert polygon_iou(square, [5, 0, 15, 0, 15, 10, 5, 10]) == pytest.approx(1 / 3)  # flat form too
    assert polygon_iou(square, [[20, 20], [30, 20], [30, 30], [20, 30]]) == 0.0
    assert polygon_iou(square, [[0, 0], [10, 0], [10, 0], [0, 0]]) == 0.0  # empty


def test_matching_is_one_to_one_and_respects_ignore_and_non_exhaustive_images() -> None:
    a, b = rect(50, 50, 40, 10), rect(50, 100, 40, 10)
    near_a = rect(51, 50, 40, 10)
    matches = match_polygons([near_a, a], [a, b])
    assert [(p, t) for p, t, _ in matches.pairs] == [(1, 0)]  # the better prediction wins the line
    assert matches.unmatched_predictions == [0] and matches.unmatched_truths == [1]

    counts = count_detections([a, near_a, rect(200, 200, 30, 10)], [a, b])
    assert (counts.tp, counts.fp, counts.fn) == (1, 2, 1)
    assert counts.precision == pytest.approx(1 / 3) and counts.recall == pytest.approx(0.5)
    # A match with an ignored line, or a prediction inside one, counts neither way.
    ignored = count_detections([a, rect(50, 100, 15, 8)], [a, rect(50, 100, 40, 10), b], ignore=[False, True, True])
    assert (ignored.tp, ignored.fp, ignored.fn) == (1, 0, 0)
    # Unlabelled lines may exist on a non-exhaustive image: extra predictions are not false positives.
    partial = count_detections([a, rect(200, 200, 30, 10)], [a, b], exhaustive=False)
    assert (partial.tp, partial.fp, partial.fn) == (1, 0, 1)


# --- crops --------------------------------------------------------------------------------------


def test_order_quad_starts_at_the_top_left_of_the_flattest_top_edge() -> None:
    tilted = order_quad(cv2.boxPoints(((100, 100), (80, 20), 30)))
    assert quad_angle(tilted) == pytest.approx(30, abs=0.5)
    assert np.linalg.norm(tilted[1] - tilted[0]) == pytest.approx(80, abs=0.5)
    tall = order_quad(rect(50, 100, 20, 120)[::-1])
    assert tall[0].tolist() == [40, 40] and tall[1].tolist() == [60, 40]  # stays tall


def test_crop_line_keeps_orientation_and_size() -> None:
    image = np.full((200, 300, 3), 255, np.uint8)
    # A tilted line, dark on its left half: the crop is upright and dark on the left.
    quad = order_quad(cv2.boxPoints(((150, 60), (120, 30), 15)))
    left = np.array([quad[0], (quad[0] + quad[1]) / 2, (quad[3] + quad[2]) / 2, quad[3]])
    cv2.fillPoly(image, [np.round(left).astype(np.int32)], (0, 0, 0))
    crop = crop_line(image, quad)
    assert crop.shape == (30, 120, 3)
    assert crop[:, 10:50].mean() < 40 and crop[:, 70:110].mean() > 215
    # A vertical line stays tall, its top at the top; a flat list of 8 numbers works too.
    cv2.rectangle(image, (250, 100), (269, 129), (0, 0, 0), -1)
    tall = crop_line(image[:, :, 0], [250, 100, 270, 100, 270, 180, 250, 180])
    assert tall.shape == (80, 20)
    assert tall[:25].mean() < 40 and tall[40:].mean() > 215
    with pytest.raises(ValueError, match="4 corners"):
        crop_line(image, [[0, 0], [1, 1]])


# --- data ---------------------------------------------------------------------------------------


def test_scene_folders_read_both_polygon_forms_and_skip_bad_lines(tmp_path: Path) -> None:
    synth = tmp_path / "synth"
    synthesize(SynthJob(kind="scenes", count=2, seed=5, out=synth, workers=1), progress=False)
    folder = SceneFolder(synth)
    assert len(folder) == 2 and folder[0].exhaustive and all(p.shape == (4, 2) for p in folder[0].polys)

    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((60, 80, 3), 128, np.uint8))
    records = [
        {
            "file": "a.jpg",
            "width": 80,
            "height": 60,
            "exhaustive": False,
            "lines": [
                {"text": "X", "poly": [10, 10, 50, 10, 50, 20, 10, 20], "ignore": True},
                {"text": "Y", "poly": [[10, 30], [50, 30], [50, 40], [10, 40]]},
            ],
        },
        {"file": "missing.jpg", "lines": []},
        {"file": "a.jpg", "lines": [{"poly": [1, 2, 3]}]},
    ]
    (tmp_path / "annotations.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    real = SceneFolder(tmp_path)
    item = real[0]
    assert len(real) == 1 and item.ignore == [True, False] and not item.exhaustive
    assert item.polys[0].tolist() == [[10, 10], [50, 10], [50, 20], [10, 20]]
    reasons = "\n".join(real.skipped)
    assert "annotations.jsonl:2: image" in reasons and "annotations.jsonl:3: lines[0]" in reasons
    assert "annotations.jsonl:4: not valid JSON" in reasons


def test_detector_training_on_scenes_where_no_image_decodes_stops_before_training(tmp_path: Path) -> None:
    data = tmp_path / "scenes"
    data.mkdir()
    records = []
    for i in range(3):
        (data / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
        records.append({"file": f"{i}.jpg", "lines": [{"text": "X", "poly": [10, 10, 50, 10, 50, 20, 10, 20]}]})
    (data / "annotations.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "run"
    with pytest.raises(EdgeOCRError, match=f"{data}: no usable sample among its 3") as excinfo:
        run_detector_training(tiny_config(out, data=(data,)))
    assert "annotations.jsonl:1" in str(excinfo.value) and not (out / "model.onnx").exists()
    with pytest.raises(EdgeOCRError, match="no usable sample"):
        run_detector_training(tiny_config(tmp_path / "run2", val=data))


def test_evaluation_samples_are_prepared_like_the_runtime() -> None:
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    item = SceneItem(image=image, polys=[rect(100, 60, 80, 20)], ignore=[False], exhaustive=True, source="x")
    sample = DetectionSamples(InMemorySamples([item]), TINY, 128, "eval")[0]
    prepared = prepare_image(image, TINY.model_copy(update={"max_side": 128}))
    assert sample.image.shape == (3, 128, 128) and sample.content == (77, 128)
    np.testing.assert_array_equal(sample.image[:, :96, :], prepared.tensor)
    assert polygon_iou(sample.polys[0], rect(64, 38.5, 51.2, 12.8)) > 0.95


def test_training_crops_move_polygons_with_the_image() -> None:
    image = np.full((300, 400, 3), 255, np.uint8)
    quad = rect(200, 150, 120, 30, 10)
    cv2.fillPoly(image, [np.round(quad).astype(np.int32)], (0, 0, 0))
    item = SceneItem(image=image, polys=[quad], ignore=[False], exhaustive=True, source="x")
    for turn in (0.0, 1.0):
        samples = DetectionSamples(
            InMemorySamples([item]),
            TINY,
            256,
            "train",
            seed=3,
            augmentation=Augmentation(scale=(0.6, 0.9), p_quarter_turn=turn),
        )
        for epoch in range(3):
            samples.set_epoch(epoch)
            sample = samples[0]
            assert sample.image.shape == (3, 256, 256) and sample.targets.prob.shape == (256, 256)
            (poly,) = sample.polys
            dark = np.argwhere(sample.image.mean(axis=0) < -1.0)  # normalised black
            inside = [cv2.pointPolygonTest(poly, (float(x), float(y)), True) > -1.5 for y, x in dark]
            assert len(dark) > 100 and np.mean(inside) > 0.99, (turn, epoch)
            assert sample.targets.prob.sum() > 0  # the line is whole in the crop, never cut


# --- training, export, runtime ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detector") / "run"
    run_detector_training(tiny_config(out))
    return out


def test_a_short_run_checkpoints_and_exports(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["precision"] == "32-true" and metrics["skipped_samples"] == 0
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    assert 0.0 <= metrics["val_hmean"] <= 1.0 and metrics["val_scenes"] == 4
    # 2 steps an epoch: the final weights (step 3) were validated after training, and the export is
    # whichever of them and the best epoch-end checkpoint scored higher
    check = metrics["final_weights_validation"]
    assert check["step"] == 3 and check["previous_best"] is not None
    assert check["became_best"] == (check["score"] > check["previous_best"])
    assert metrics["val_hmean"] == pytest.approx(max(check["score"], check["previous_best"]))
    assert (trained / "checkpoints" / "last.ckpt").is_file() and (trained / "checkpoints" / "best.ckpt").is_file()
    sidecar = json.loads((trained / "model.json").read_text())
    assert sidecar["format"] == "edgeocr-detector" and sidecar["config"]["max_side"] == 128
    with pytest.raises(EdgeOCRError, match="already holds a training run"):
        run_detector_training(tiny_config(trained))


def test_onnx_output_matches_torch(trained: Path) -> None:
    cfg, state = load_detector_weights(trained / "checkpoints" / "best.ckpt")
    model = build_detector(cfg).eval()
    model.load_state_dict(state)
    import onnxruntime as ort

    session = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 96, 160), (3, 3, 64, 64)]:  # neither is the export example's size
        images = torch.randn(*shape)
        with torch.no_grad():
            expected = model(images).numpy()
        (got,) = session.run(["prob"], {"image": images.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_runtime_loads_the_verified_model_and_detects(trained: Path, tmp_path: Path) -> None:
    detector = OnnxDetector(trained / "model.onnx")
    assert detector.config.arch == "db_tiny"
    image = np.random.default_rng(1).integers(0, 255, (90, 150, 3), dtype=np.uint8)
    lines = detector.detect(image)
    assert isinstance(lines, list) and all(isinstance(ln, DetectedLine) for ln in lines)
    for line in lines:
        assert line.poly.shape == (4, 2) and line.poly.dtype == np.float32 and 0 <= line.score <= 1
        assert line.poly[:, 0].min() >= -0.5 and line.poly[:, 0].max() <= 149.5
    batch = detector.detect_batch([image, image[:40, :, 0], image])
    assert len(batch) == 3 and [len(b) for b in batch][0] == len(lines)

    # A model modified after export is refused.
    tampered = tmp_path / "model.onnx"
    tampered.write_bytes((trained / "model.onnx").read_bytes() + b"\0")
    (tmp_path / "model.json").write_text((trained / "model.json").read_text())
    with pytest.raises(ModelError, match="does not match the checksum"):
        OnnxDetector(tampered)
    (tmp_path / "model.json").unlink()
    with pytest.raises(ModelError, match="sidecar .* is missing"):
        OnnxDetector(tampered)


RUN_UNTIL_KILLED = """
import sys, time
from pathlib import Path
from edgeocr.train import detector_trainer as t

step = t.DetectorModule.training_step
def slow_step(self, batch, batch_idx):
    time.sleep(0.3)  # slow enough that the test kills the run well before its last step
    return step(self, batch, batch_idx)
t.DetectorModule.training_step = slow_step
t.run_detector_training(t.DetectorTrainConfig.model_validate_json(Path(sys.argv[1]).read_text()))
"""


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path: Path, killed_run) -> None:
    out = tmp_path / "run"
    cfg = tiny_config(
        out,
        input_size=64,
        scenes_per_epoch=8,
        val_scenes=2,
        batch_size=2,
        epochs=3,
        max_steps=10,
        checkpoint_every_n_steps=2,
    )
    config_file = tmp_path / "cfg.json"
    config_file.write_text(cfg.to_json())
    saved_step = killed_run(RUN_UNTIL_KILLED, config_file, out)
    assert 0 < saved_step < 10 and not (out / "model.onnx").exists()

    run_detector_training(cfg.model_copy(update={"resume": True}))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == saved_step and metrics["steps"] == 10
    assert OnnxDetector(out / "model.onnx").config.arch == "db_tiny"


def test_the_module_entry_point_builds_the_config_from_key_values(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "arch=db_tiny",
                "input_size=64",
                "scenes_per_epoch=2",
                "val_scenes=1",
                "batch_size=2",
                "max_steps=1",
                "workers=0",
                "accelerator=cpu",
                "progress_bar=false",
                f"out={out}",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out / "model.onnx")
    assert json.loads((out / "train_config.json").read_text())["input_size"] == 64
    assert main(["arch=db_tiny", "input_size=100", f"out={out}"]) == 2
    assert "input_size" in capsys.readouterr().err


def test_invalid_settings_are_reported_with_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown detector architecture"):
        DetectorTrainConfig(arch="yolo", out=tmp_path)
    with pytest.raises(ValueError, match="multiple of 32"):
        DetectorTrainConfig(input_size=100, out=tmp_path)
    with pytest.raises(ValueError, match="nothing to train on"):
        DetectorTrainConfig(scenes_per_epoch=0, out=tmp_path)
    with pytest.raises(EdgeOCRError, match="cannot resume: no checkpoint"):
        run_detector_training(tiny_config(tmp_path / "run", resume=True))
