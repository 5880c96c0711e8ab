"""Preprocessing in the Reader and the CLI, the preprocessing ablation's scoring, the format-gain benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edgeocr.bench import ablation, format_gain
from edgeocr.bench.peers import EngineNotInstalled
from edgeocr.core.errors import DataError, EdgeOCRError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.runtime.reader import Reader, ReaderConfig, ReadOptions, Region
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

CFG = RecognizerConfig(arch="crnn_tiny", max_width=256)
ENGINE = EngineConfig(intra_op_threads=1, inter_op_threads=1)
CROPS = ReadOptions(return_crops=True)


@pytest.fixture(scope="module")
def tiny_model(sharpened_tiny_model) -> str:
    return sharpened_tiny_model


def code_image(seed: int = 0, width: int = 160, height: int = 40) -> np.ndarray:
    """Gray-ish BGR crop with dark blobs on a light, unevenly lit background (values not just 0/255)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(170, 235, width, dtype=np.float32)[None, :].repeat(height, 0)
    for x in range(8, width - 12, 10):
        ramp[10:30, x : x + 5] = rng.integers(20, 80)
    gray = cv2.GaussianBlur(ramp, (3, 3), 0).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


# --- the Reader's preprocessing ----------------------------------------------------------------


def test_reader_feeds_the_preprocessed_crop_to_the_recogniser(tiny_model, monkeypatch) -> None:
    seen: list[np.ndarray] = []
    original = OnnxRecognizer.recognize_probs

    def spy(self, images):
        seen.extend(np.array(i, copy=True) for i in images)
        return original(self, images)

    monkeypatch.setattr(OnnxRecognizer, "recognize_probs", spy)
    image = code_image()
    plain = Reader(ReaderConfig(model=tiny_model, engine=ENGINE))
    assert plain.config.preprocess == "none"
    (line,) = plain.read(image, options=CROPS)
    assert np.array_equal(seen[-1], image) and np.array_equal(line.crop, image)

    binarised = Reader(ReaderConfig(model=tiny_model, engine=ENGINE, preprocess="binarize"))
    (line,) = binarised.read(image, options=CROPS)
    fed = seen[-1]
    assert fed.ndim == 2 and set(np.unique(fed).tolist()) == {0, 255}  # gray|polarity|otsu output
    assert np.array_equal(line.crop, fed)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    level, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    assert np.array_equal(fed, np.where(gray > level, 255, 0).astype(np.uint8))  # dark text stays dark

    inverted = Reader(ReaderConfig(model=tiny_model, engine=ENGINE, preprocess="invert"))
    inverted.read(image)
    assert np.array_equal(seen[-1], 255 - image)


def test_regions_can_name_their_own_preprocessing(tiny_model) -> None:
    regions = (
        Region(name="left", rect=(0, 0, 80, 40)),
        Region(name="right", rect=(80, 0, 80, 40), preprocess="gray|invert"),
    )
    reader = Reader(ReaderConfig(model=tiny_model, engine=ENGINE, mode="roi", regions=regions, preprocess="gray"))
    image = code_image(1)
    left, right = reader.read(image, options=CROPS)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(left.crop, gray[:, :80])
    assert np.array_equal(right.crop, 255 - gray[:, 80:])


def test_bad_preprocessing_is_refused_when_the_config_is_built() -> None:
    with pytest.raises(ValidationError, match="unknown operation 'sharpen'.*presets: none, dotmatrix"):
        ReaderConfig(preprocess="sharpen")
    with pytest.raises(ValidationError, match="median: ksize: ksize must be odd"):
        ReaderConfig(preprocess="gray|median:ksize=4")
    with pytest.raises(ValidationError, match="'normalize' is the recogniser's own step"):
        ReaderConfig(preprocess="gray|normalize")
    with pytest.raises(ValidationError, match="unknown operation 'bogus'"):
        Region(rect=(0, 0, 10, 10), preprocess="bogus")
    assert ReaderConfig(preprocess="gray|clahe:clip=3,tile=4").preprocess == "gray|clahe:clip=3,tile=4"


def test_cli_refuses_a_bad_preprocess_option_in_one_line(cli, tmp_path) -> None:
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), code_image())
    for args in (
        ["read", str(image), "--preprocess", "sharpen"],
        ["eval", "--data", str(tmp_path), "--preprocess", "sharpen"],
    ):
        done = cli(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and "unknown operation 'sharpen'" in done.stderr
        assert "Traceback" not in done.stderr


def test_cli_read_applies_the_preprocess_option(cli, tmp_path, tiny_model) -> None:
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), code_image())
    outputs = {}
    for preset in ("none", "invert"):
        out = tmp_path / f"{preset}.json"
        done = cli(
            "read",
            str(image),
            "--model",
            tiny_model,
            "--preprocess",
            preset,
            "--threads",
            "1",
            "--json",
            str(out),
            "-q",
        )
        assert done.returncode == 0, done.stderr
        outputs[preset] = json.loads(out.read_text())["results"][0]["lines"][0]
    reader = Reader(ReaderConfig(model=tiny_model, engine=ENGINE, preprocess="invert"))
    assert outputs["invert"]["raw_text"] == reader.read(image)[0].raw_text


# --- the ablation's scoring ----------------------------------------------------------------------


class FakeEngine:
    """Reads each crop from a table keyed by (its fill value, colour or gray): exact, known answers."""

    name = "fake"
    threads = 1
    batches = False
    version = "fake 1"
    model_size_bytes = 0

    def __init__(self, table: dict[tuple[int, int], str]) -> None:
        self.table = table

    def load(self) -> None:
        pass

    def read(self, image: np.ndarray) -> tuple[str, float]:
        return self.table[(int(image[0, 0] if image.ndim == 2 else image[0, 0, 0]), image.ndim)], 0.9

    def read_batch(self, images):
        return [self.read(i) for i in images]


def labelled_folder(root: Path, rows: list[tuple[str, str, int]]) -> Path:
    for rel, _, value in rows:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((20, 60, 3), value, np.uint8))
    (root / "labels.tsv").write_text("".join(f"{rel}\t{text}\n" for rel, text, _ in rows), encoding="utf-8")
    return root


def test_ablation_scores_each_category_under_its_rule(tmp_path) -> None:
    data = labelled_folder(
        tmp_path / "industrial",
        [
            ("container/a.png", "CSQU3054383", 10),
            ("dotmatrix_medicine/b.png", "EXP 10/27", 20),
            ("sroie_lines/c.png", "TOTAL 5.00", 30),
        ],
    )
    engine = FakeEngine(
        {
            (10, 3): "CSQU 305438 3",
            (10, 2): "CSQU305438",  # relaxed: exact, then one character missing
            (20, 3): "EXP 10/27",
            (20, 2): "EXP 1O/27",  # strict: exact, then one substitution
            (30, 3): "total 5.00",
            (30, 2): "TOTAL 5.00",  # case-insensitive: exact both times
        }
    )
    pipelines = ablation.build_pipelines(ablation.split_presets("none,gray"))
    result = ablation.run_ablation(ablation.load_datasets([data]), [engine], pipelines, threads=1)
    (record,) = result["engines"]
    none, gray = record["cells"]["none"]["industrial"], record["cells"]["gray"]["industrial"]
    assert none["scored"] == {"char_accuracy": 1.0, "exact_match": 1.0}
    assert gray["scored"] == {"char_accuracy": round(28 / 30, 6), "exact_match": round(1 / 3, 6)}
    assert gray["per_category"]["container"]["scored"] == {"char_accuracy": round(10 / 11, 6), "exact_match": 0.0}
    assert gray["per_category"]["dotmatrix_medicine"]["scored"] == {
        "char_accuracy": round(8 / 9, 6),
        "exact_match": 0.0,
    }
    assert gray["per_category"]["sroie_lines"]["scored"] == {"char_accuracy": 1.0, "exact_match": 1.0}
    # eval's strict and relaxed figures stay beside the rule's score: the spaced container read is 2 edits strict.
    assert none["per_category"]["container"]["char_accuracy"] == round(1 - 2 / 11, 6)
    assert none["per_category"]["container"]["exact_match_relaxed"] == 1.0
    assert none["per_category"]["sroie_lines"]["exact_match"] == 0.0
    assert none["predictions"] == ["CSQU 305438 3", "EXP 10/27", "total 5.00"]
    assert record["best"] == {
        "industrial/container": ["none"],
        "industrial/dotmatrix_medicine": ["none"],
        "industrial/sroie_lines": ["none", "gray"],
        "industrial/ALL": ["none"],
        "MEAN": ["none"],
    }
    assert set(result["pipelines"]) == {"none", "gray"} and result["pipelines"]["none"]["spec"] == "none"

    paths = ablation.write_outputs(result, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["engines"][0]["best"]["MEAN"] == ["none"]
    text = paths["markdown"].read_text()
    assert "| industrial/container (relaxed) | 1 | **100.0 / 100** | 90.9 / 0 |" in text
    assert "| industrial/sroie_lines (caseless) | 1 | **100.0 / 100** | **100.0 / 100** |" in text
    assert "| industrial/dotmatrix_medicine | none | none |" not in text  # one engine: one column
    assert "| industrial/dotmatrix_medicine | none |" in text


def test_ablation_reports_a_missing_engine_and_parses_presets(tmp_path) -> None:
    class Missing(FakeEngine):
        name = "missing"

        def load(self) -> None:
            raise EngineNotInstalled("not here")

    data = labelled_folder(tmp_path / "d", [("container/a.png", "AB", 10)])
    result = ablation.run_ablation(
        ablation.load_datasets([data]), [Missing({})], ablation.build_pipelines(["none"]), threads=1
    )
    assert result["engines"] == [{"name": "missing", "status": "not installed", "reason": "not here"}]
    assert "not installed: not here" in ablation.markdown(result)
    assert ablation.split_presets(["none,gray|clahe:clip=3,tile=4", "binarize"]) == [
        "none",
        "gray|clahe:clip=3,tile=4",
        "binarize",
    ]
    with pytest.raises(EdgeOCRError, match="more than once"):
        ablation.split_presets("none,none")
    with pytest.raises(EdgeOCRError, match="unknown operation 'sharpen'"):
        ablation.build_pipelines(["sharpen"])
    missing = ["--data", str(tmp_path / "nowhere"), "--models", "default", "--out", str(tmp_path / "o")]
    assert ablation.main(missing) == 2  # no labels.tsv: one line on stderr, no traceback


# --- format gain ----------------------------------------------------------------------------------


def test_format_gain_runs_on_a_tiny_folder(tmp_path, tiny_model, capsys) -> None:
    data = tmp_path / "industrial"
    for rel, seed in (
        ("container/a.png", 1),
        ("container/b.png", 2),
        ("dotmatrix_medicine/c.png", 3),
        ("plate_eu/d.png", 4),
    ):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data / rel), code_image(seed))
    (data / "labels.tsv").write_text(
        "container/a.png\tCSQU3054383\ncontainer/b.png\t22G1\n"
        "dotmatrix_medicine/c.png\tEXP 10/2027\nplate_eu/d.png\tAB123\n"
    )
    result = format_gain.run_format_gain(data, tiny_model, threads=1, repeats=1)
    names = [s["name"] for s in result["scenarios"]]
    assert names == [s.name for s in format_gain.SCENARIOS]
    iso, door, medicine = result["scenarios"]
    assert {k: r["n"] for k, r in iso["rows"].items()} == {"container": 2, "ALL": 2, format_gain.FITTING_ROW: 1}
    assert door["rows"][format_gain.FITTING_ROW]["n"] == 2 and medicine["rows"]["ALL"]["n"] == 1
    assert iso["rows"]["ALL"]["scoring"] == "relaxed" and medicine["rows"]["ALL"]["scoring"] == "strict"
    for scenario in result["scenarios"]:
        reads = scenario["reads"]
        formats = scenario["rows"]["ALL"]["formats"]
        assert formats["no_valid_read"] == sum(r["format"] is None for r in reads)
        assert all(r["formats"] == "" for r in reads if r["format"] is None)  # 'no valid read': empty text
        assert formats["decode_ms_p50"] > 0 and scenario["rows"]["ALL"]["free"]["decode_ms_p50"] > 0
    assert all(r["format"] in (None, "iso6346") for r in iso["reads"])
    assert (
        format_gain.main(["--data", str(data), "--model", tiny_model, "--repeats", "1", "--out", str(tmp_path / "out")])
        == 0
    )
    assert "| container: iso6346 | container (relaxed) | 2 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / format_gain.FORMAT_GAIN_JSON).read_text())["model"] == tiny_model

    other = tmp_path / "words"
    (other / "x").mkdir(parents=True)
    cv2.imwrite(str(other / "x" / "a.png"), code_image())
    (other / "labels.tsv").write_text("x/a.png\tABC\n")
    with pytest.raises(DataError, match="no crops in the categories"):
        format_gain.run_format_gain(other, tiny_model, threads=1, repeats=1)
