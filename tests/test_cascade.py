"""The cascade: a fast recogniser reads every line, a stronger one re-reads those it is unsure of."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeocr import EdgeOCRError, Reader, ReaderConfig
from edgeocr.cli import main
from edgeocr.core.errors import ModelError
from edgeocr.core.images import read_image

ROOT = Path(__file__).resolve().parents[1]
LINES = sorted((ROOT / "samples/lines").rglob("*.png"))
BELOW = 0.95


@pytest.fixture(scope="module")
def images():
    return [read_image(path) for path in LINES]


def test_the_cascade_is_a_fast_read_then_a_strong_reread_of_the_unsure_lines(images) -> None:
    cascade = Reader(model="default", detector=None, fallback="accurate", fallback_below=BELOW)
    fast = Reader(model="default", detector=None)
    strong = Reader(model="accurate", detector=None)
    by_hand = []
    for image in images:
        (line,) = fast.read(image)
        if line.confidence < BELOW:
            (line,) = strong.read(image)
            line = replace(line, model="accurate")
        by_hand.append(line)
    got = [result[0] for result in cascade.read_batch(images)]
    assert got == by_hand
    models = [line.model for line in got]
    assert "default" in models and "accurate" in models  # the samples hold both cases
    assert all(result[0].model == "default" for result in fast.read_batch(images))


def test_a_line_out_of_its_format_is_reread_whatever_its_confidence(images) -> None:
    # No sample is a GTIN-13 but one: every other line fails the format and goes to the fallback.
    config = {"detector": None, "formats": ["gtin13"], "fallback": "accurate", "fallback_below": 0.01}
    lines = [result[0] for result in Reader(model="default", **config).read_batch(images)]
    in_format = [line for line in lines if line.format == "gtin13"]
    assert in_format and all(line.model == "default" for line in in_format)
    assert all(line.model == "accurate" for line in lines if line.format is None)


def test_batch_equals_sequential_with_a_cascade(images) -> None:
    reader = Reader(model="default", detector=None, fallback="accurate", fallback_below=BELOW)
    assert reader.read_batch(images) == [reader.read(image) for image in images]


def test_bad_cascades_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(EdgeOCRError, match="cannot read .* that 'accurate' reads"):
        Reader(model="accurate", detector=None, fallback="default")  # default lacks ASCII punctuation
    for below in (0.0, -0.1, 1.5):
        with pytest.raises(ValidationError, match="fallback_below"):
            ReaderConfig(fallback="accurate", fallback_below=below)
    # An optimised model copied without its sidecar: a clear error naming the missing file, nothing written.
    lone = tmp_path / "model.onnx"
    shutil.copyfile(ROOT / "src/edgeocr/assets/models/fast-int8.onnx", lone)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ModelError, match=r"model\.json"):
        Reader(model="default", detector=None, fallback=lone)
    assert sorted(tmp_path.iterdir()) == before


def test_the_command_line_records_which_model_read_each_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "reads.jsonl"
    args = ["read", *map(str, LINES), "--model", "default", "--fallback", "accurate", "--fallback-below", str(BELOW)]
    assert main([*args, "--jsonl", str(out), "-q"]) == 0
    import json

    records = [json.loads(row) for row in out.read_text().splitlines()]
    assert {r["model"] for r in records} == {"default", "accurate"}
    assert main([*args[:-1], "1.5"]) == 2
    assert "fallback_below" in capsys.readouterr().err


def test_the_threshold_study_prints_the_curve_between_the_two_models(tmp_path: Path, capsys) -> None:
    import json

    args = ["study", "cascade", "--data", str(ROOT / "samples/lines"), "--thresholds", "0.5,0.95,1.0"]
    assert main([*args, "--threads", "1", "--out", str(tmp_path)]) == 0
    (result,) = json.loads((tmp_path / "cascade.json").read_text())
    rows = {row["name"]: row for row in result["rows"]}
    assert result["n"] == len(LINES) and set(rows) == {
        "default",
        "accurate",
        *(f"cascade@{t}" for t in (0.5, 0.95, 1.0)),
    }
    # At threshold 1.0 every crop is re-read: the cascade reads as the strong model, and costs both.
    assert rows["cascade@1.0"]["reread_share"] == 1.0
    assert rows["cascade@1.0"]["char_accuracy"] == rows["accurate"]["char_accuracy"]
    assert rows["cascade@1.0"]["ms_mean"] > rows["accurate"]["ms_mean"]
    shares = [rows[f"cascade@{t}"]["reread_share"] for t in (0.5, 0.95, 1.0)]
    assert shares == sorted(shares) and 0.0 < shares[1] < 1.0
    assert "cascade@0.95" in capsys.readouterr().out and (tmp_path / "cascade.md").is_file()
    assert main([*args[:-1], "0,0.5"]) == 2  # argparse: a threshold of 0 is refused
