"""`edgeocr eval --mode rec`: the JSON a user can recompute, the metrics, and bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.core.errors import DataError
from edgeocr.data.labels import read_labels
from edgeocr.measure.evaluate import evaluate_rec
from edgeocr.measure.metrics import accuracy, relaxed, selective_accuracy


def test_metric_definitions():
    scores = accuracy(["AB12", "EXP 10/27"], ["AB12", "EXP 1O/27"])
    assert scores["exact_match"] == 0.5
    assert scores["char_accuracy"] == pytest.approx(1 - 1 / 13)
    assert relaxed("exp 10/27") == "EXP1027"
    assert accuracy(["ABC"], ["XXXXXXXXXX"])["char_accuracy"] == 0.0  # floored at 0
    assert accuracy(["MSKU 123456 7"], ["MSKU1234567"])["exact_match_relaxed"] == 1.0


def test_selective_accuracy_scores_only_the_lines_a_threshold_accepts():
    labels = ["LOT 1", "LOT 2", "LOT 3", "LOT 4"]
    reads = ["LOT 1", "LOT 7", "LOT 3", "XXXX"]
    rows = selective_accuracy(labels, reads, [0.95, 0.8, 0.6, 0.1], thresholds=(0.0, 0.5, 0.9, 0.99))
    assert [r["accepted"] for r in rows] == [1.0, 0.75, 0.25, 0.0]
    assert [r["wrong_accepted"] for r in rows] == [2, 1, 0, 0]
    assert rows[1]["exact_match"] == pytest.approx(2 / 3)
    assert rows[1]["char_accuracy"] == pytest.approx(1 - 1 / 15)
    assert rows[2]["exact_match"] == 1.0 and rows[3]["exact_match"] == 0.0  # nothing accepted scores 0
    with pytest.raises(ValueError):
        selective_accuracy(labels, reads, [0.5])


def make_folder(root: Path, rows: list[tuple[str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, _ in rows:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((20, 60, 3), 200, np.uint8))
    (root / "labels.tsv").write_text("".join(f"{rel}\t{text}\n" for rel, text in rows), encoding="utf-8")
    return root


def test_evaluate_rec_groups_by_first_folder_and_keeps_every_prediction(tmp_path):
    data = make_folder(
        tmp_path / "d", [("lot/a.png", "LOT 123"), ("lot/b.png", "LOT 456"), ("date/c.png", "EXP 10/27")]
    )
    reads = {"LOT 123": "LOT 123", "LOT 456": "LOT 45", "EXP 10/27": "exp 10/27"}
    labels = {s.file: s.text for s in read_labels(data)[0]}
    result = evaluate_rec(lambda image: ("", 0.5), data)
    assert result["n"] == 3 and len(result["predictions"]) == 3
    assert set(result["per_category"]) == {"lot", "date"} and result["per_category"]["lot"]["n"] == 2
    assert result["char_accuracy"] == 0.0 and result["latency_ms_p50"] >= 0

    order = [labels[f] for f in ("lot/a.png", "lot/b.png", "date/c.png")]
    calls = iter(order[:3] + order)  # three warm-up reads, then one per image

    def oracle(image):
        return reads[next(calls)], 0.9

    result = evaluate_rec(oracle, data)
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["exact_match_relaxed"] == pytest.approx(2 / 3)
    p = result["predictions"]
    recomputed = accuracy([x["label"] for x in p], [x["prediction"] for x in p])
    assert recomputed["char_accuracy"] == pytest.approx(result["char_accuracy"], abs=1e-6)
    # Every read had confidence 0.9: thresholds up to 0.9 accept all three lines, none above.
    assert [r["accepted"] for r in result["at_confidence"]] == [1.0, 1.0, 1.0, 1.0]
    assert result["at_confidence"][-1]["wrong_accepted"] == 2


def test_bad_label_files_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_labels(tmp_path)
    (tmp_path / "labels.tsv").write_text("")
    with pytest.raises(DataError, match="no usable"):
        read_labels(tmp_path)
    data = make_folder(tmp_path / "d", [("a.png", "A1")])
    with open(data / "labels.tsv", "a") as fh:
        fh.write("no-tab-here\n")
    with pytest.raises(DataError, match=r"labels.tsv:2: no TAB"):
        read_labels(data)
    samples, skipped = read_labels(data, strict=False)
    assert len(samples) == 1 and skipped and "labels.tsv:2" in skipped[0]


def test_undecodable_image_is_reported_with_its_label_line(tmp_path):
    data = make_folder(tmp_path / "d", [("a.png", "A1"), ("b.png", "B2")])
    (data / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"labels.tsv:2: .*b.png: not a decodable image"):
        evaluate_rec(lambda image: ("", 0.0), data)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from edgeocr.core.recognizer_config import RecognizerConfig
    from edgeocr.models import build_from_config, export_onnx

    torch.manual_seed(0)
    cfg = RecognizerConfig(arch="crnn_tiny", max_width=256)
    return export_onnx(build_from_config(cfg).eval(), cfg, tmp_path_factory.mktemp("m") / "tiny.onnx")


def test_eval_cli_writes_the_documented_json(cli, tmp_path, tiny_model):
    data = make_folder(tmp_path / "d", [("lot/a.png", "LOT 1"), ("date/b.png", "EXP 1"), ("c.png", "X")])
    out = cli(
        "eval", "--data", str(data), "--model", str(tiny_model), "--json", str(tmp_path / "r.json"), "--threads", "1"
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    for key in (
        "n",
        "char_accuracy",
        "exact_match",
        "char_accuracy_relaxed",
        "exact_match_relaxed",
        "latency_ms_p50",
        "latency_ms_p95",
        "per_category",
        "predictions",
    ):
        assert key in result
    assert result["n"] == 3 and set(result["per_category"]) == {"lot", "date", ""}
    assert set(result["predictions"][0]) == {"file", "label", "prediction", "confidence"}
    assert "ALL" in out.stdout
    assert [r["min_confidence"] for r in result["at_confidence"]] == [0.3, 0.5, 0.7, 0.9]
    assert "% of lines accepted" in out.stdout


def test_eval_cli_errors(cli, tmp_path, tiny_model):
    out = cli("eval", "--data", str(tmp_path), "--model", str(tiny_model))
    assert out.returncode == 2 and "labels.tsv" in out.stderr
    data = make_folder(tmp_path / "d", [("a.png", "A")])
    out = cli("eval", "--data", str(data), "--model", str(tmp_path / "missing.onnx"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = cli("eval", "--data", str(data), "--model", "no-such-model")
    assert out.returncode == 2 and "no model named" in out.stderr


# --- runs that finish: an image that cannot be loaded or read is an error entry ---------------------


@pytest.mark.timeout(60)  # a FIFO that was opened would block
def test_eval_cli_lists_images_it_cannot_load_or_read_and_scores_the_others(tmp_path, tiny_model, capsys):
    import os

    from edgeocr.cli import main

    rows = [("a.png", "A1"), ("b.png", "B2"), ("c.png", "C3"), ("d.png", "D4"), ("e.png", "E5"), ("sub.png", "F6")]
    data = make_folder(tmp_path / "d", rows[:3])
    (data / "b.png").write_bytes(b"not an image at all")  # undecodable
    os.mkfifo(data / "d.png")  # a FIFO named as an image: refused, never opened
    (data / "sub.png").mkdir()  # a directory named as an image
    with open(data / "labels.tsv", "a", encoding="utf-8") as fh:
        fh.write("".join(f"{rel}\t{text}\n" for rel, text in rows[3:]))  # e.png does not exist
    out = tmp_path / "r.json"
    code = main(["eval", "--data", str(data), "--model", str(tiny_model), "--json", str(out), "--threads", "1"])
    assert code == 1
    result = json.loads(out.read_text())
    assert result["n"] == 2 and [p["file"] for p in result["predictions"]] == ["a.png", "c.png"]
    errors = {e["file"]: e for e in result["errors"]}
    assert list(errors) == ["b.png", "d.png", "e.png", "sub.png"]
    assert "not a decodable image" in errors["b.png"]["error"] and errors["b.png"]["line"] == 2
    assert "FIFO" in errors["d.png"]["error"] and "no such file" in errors["e.png"]["error"]
    assert "a directory, not a regular file" in errors["sub.png"]["error"] and errors["sub.png"]["label"] == "F6"
    captured = capsys.readouterr()
    assert "ALL" in captured.out and "4 image(s) could not be read" in captured.err


def test_evaluate_keep_going_records_any_read_error_by_type_and_message(tmp_path):
    data = make_folder(tmp_path / "d", [("a.png", "A1"), ("b.png", "B2"), ("c.png", "C3")])
    calls = iter(range(100))

    def read(image):
        if next(calls) == 4:  # three warm-up reads, then a.png, then b.png fails
            raise ValueError("operands could not be broadcast together with shapes (3,) (2,)")
        return "A1", 0.9

    result = evaluate_rec(read, data, keep_going=True)
    assert result["n"] == 2 and [p["file"] for p in result["predictions"]] == ["a.png", "c.png"]
    assert result["errors"] == [
        {
            "file": "b.png",
            "line": 2,
            "label": "B2",
            "error": "ValueError: operands could not be broadcast together with shapes (3,) (2,)",
        }
    ]
    assert "errors" not in evaluate_rec(lambda image: ("A1", 0.9), data)  # the strict default is unchanged

    def interrupted(image):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is never an error entry
        evaluate_rec(interrupted, data, keep_going=True)
    with pytest.raises(DataError, match="none of the 3 labelled images could be read"):
        evaluate_rec(lambda image: (_ for _ in ()).throw(MemoryError()), data, keep_going=True)


def test_eval_e2e_lists_an_image_it_cannot_load_and_scores_the_others(tmp_path, capsys):
    import shutil

    from edgeocr.cli import main

    scenes = Path(__file__).resolve().parents[1] / "samples" / "scenes"
    data = tmp_path / "scenes"
    shutil.copytree(scenes, data)
    broken = sorted((data / "images").glob("*.jpg"))[1]
    broken.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "e2e.json"
    args = ["eval", "--mode", "e2e", "--data", str(data), "--detector", "default", "--threads", "1"]
    assert main([*args, "--json", str(out), "--quiet"]) == 1
    result = json.loads(out.read_text())
    assert result["images"] == 2 and len(result["per_image"]) == 2
    assert [e["file"] for e in result["errors"]] == [f"images/{broken.name}"]
    assert broken.name in result["errors"][0]["error"]
    assert "1 image(s) could not be read" in capsys.readouterr().err
