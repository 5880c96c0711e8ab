"""PP-OCRv6 small imported from the rapidocr wheel: parity with the package's own ONNX file through
ONNX Runtime, the charset mapping, fine-tuning with export and runtime round trip, and the errors a
user meets. Nothing here skips: a missing package or a parity mismatch fails."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeocr.cli import main
from edgeocr.core.charset import ASCII_CHARSET, DEFAULT_CHARSET, Charset
from edgeocr.core.ctc import greedy_decode
from edgeocr.core.errors import DataError, EdgeOCRError, ModelError
from edgeocr.core.images import read_image
from edgeocr.core.lineimage import prepare_line
from edgeocr.data.datasets import render_synthetic
from edgeocr.data.labels import read_labels
from edgeocr.models.factory import build_from_config, default_config
from edgeocr.models.pretrained import (
    SOURCES,
    load_exported,
    load_source,
    map_charset,
    mapped_head,
    source_classes,
    source_file,
)
from edgeocr.models.weights import weights_path
from edgeocr.runtime.recognizer import OnnxRecognizer
from edgeocr.train.finetune import finetune_command, starting_model
from edgeocr.train.report_eval import REPORT_FILE, read_report
from edgeocr.train.trainer import TrainConfig, run_training

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "lines"
PARITY_TOLERANCE = 1e-3

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def source_session() -> ort.InferenceSession:
    """The package's own PP-OCRv6 small file, run by ONNX Runtime as RapidOCR runs it."""
    return ort.InferenceSession(str(source_file(SOURCES["ppocrv6"])), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def classes() -> list[str]:
    return source_classes(onnx.load(str(source_file(SOURCES["ppocrv6"]))))


@pytest.fixture(scope="module")
def imported():
    network, cfg, report = load_source("ppocrv6")
    return network, cfg, report


def _sample_lines(cfg) -> list[tuple[str, np.ndarray]]:
    samples, _ = read_labels(SAMPLES, strict=True)
    return [(s.text, prepare_line(read_image(s.path), cfg)[None]) for s in samples]


def _greedy(probs: np.ndarray, names: list[str]) -> str:
    best, out, previous = probs.argmax(-1), [], -1
    for index in best:
        if index != previous and index != 0:
            out.append(names[index])
        previous = index
    return "".join(out)


def _source_probs(session: ort.InferenceSession, line: np.ndarray) -> np.ndarray:
    # The source reads BGR; a gray line is the same line on each of the three channels.
    return session.run(None, {"x": np.repeat(line, 3, axis=1)})[0][0]


def test_the_imported_architecture_reads_48_px_lines_at_8_px_per_frame() -> None:
    from edgeocr.models.factory import count_parameters

    cfg = default_config("ppocrv6_small")
    assert (cfg.input_height, cfg.frame_stride, cfg.num_classes) == (48, 8, len(DEFAULT_CHARSET) + 1)
    network = build_from_config(cfg).eval()
    for width in (32, 200, 648):
        with torch.no_grad():
            assert network(torch.zeros(2, 1, 48, width)).shape == (2, width // 8, cfg.num_classes)
    assert 2.9e6 < count_parameters(network) < 3.1e6  # 3.01 M: the 18,710-class head trimmed to 76
    assert len(network.stages()) == 8
    # The same weights read 32 px lines (the last pool takes the 2 rows left instead of 3); not 40 px.
    low = build_from_config(cfg.model_copy(update={"input_height": 32})).eval()
    low.load_state_dict(network.state_dict())
    with torch.no_grad():
        assert low(torch.zeros(2, 1, 32, 200)).shape == (2, 25, cfg.num_classes)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_from_config(cfg.model_copy(update={"input_height": 40}))


def test_full_dictionary_import_matches_the_package_onnx(source_session, classes) -> None:
    """Imported with the source's own dictionary, the module is the package's model: same probabilities."""
    network, cfg, report = load_source("ppocrv6", Charset("".join(classes[1:])))
    assert report.kept_chars == len(classes) - 1 and report.new_chars == ""
    assert report.sha256 == SOURCES["ppocrv6"].sha256
    for text, line in _sample_lines(cfg):
        with torch.no_grad():
            ours = torch.softmax(network(torch.from_numpy(line)), -1).numpy()[0]
        theirs = _source_probs(source_session, line)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= PARITY_TOLERANCE, text
        assert _greedy(ours, classes) == _greedy(theirs, classes), text


def test_mapped_module_matches_the_package_onnx_on_the_sample_crops(imported, source_session, classes) -> None:
    """Our charset: the source's distribution restricted to it and renormalised, within 1e-3, same reads."""
    network, cfg, _ = imported
    keep = [0] + [classes.index(c) for c in cfg.charset]
    lines = _sample_lines(cfg)
    assert len(lines) == 10
    worst = 0.0
    for _text, line in lines:
        with torch.no_grad():
            ours = torch.softmax(network(torch.from_numpy(line)), -1).numpy()[0]
        theirs = _source_probs(source_session, line)[:, keep]
        theirs = theirs / theirs.sum(-1, keepdims=True)
        worst = max(worst, float(np.abs(ours - theirs).max()))
        assert greedy_decode(ours.astype(np.float64), cfg.charset_obj).text == _greedy(theirs, ["", *cfg.charset])
    assert worst <= PARITY_TOLERANCE


@pytest.mark.slow
def test_mapped_model_reads_as_the_source_wherever_the_source_read_fits_the_charset(
    imported, source_session, classes
) -> None:
    """Before training: every crop whose source read uses only our characters is read the same."""
    network, cfg, _ = imported
    crops = [line for _, line in _sample_lines(cfg)]
    crops += [prepare_line(item.image, cfg)[None] for item in render_synthetic(40, 11, cfg.charset)]
    compared = 0
    for line in crops:
        theirs = _greedy(_source_probs(source_session, line), classes)
        if Charset(cfg.charset).unknown_chars(theirs):
            continue
        with torch.no_grad():
            ours = torch.softmax(network(torch.from_numpy(line)), -1).numpy()[0].astype(np.float64)
        assert greedy_decode(ours, cfg.charset_obj).text == theirs
        compared += 1
    assert compared >= 40  # most crops fit; the rest read a character outside the charset


def test_charset_mapping_keeps_source_rows_and_adds_new_ones(classes) -> None:
    mapping = map_charset(classes, "A1\ue000-")
    assert mapping.rows[0] == 0 and mapping.rows[1] == classes.index("A") and mapping.rows[2] == classes.index("1")
    assert mapping.rows[3] is None and mapping.new_chars == "\ue000" and mapping.kept == 3
    assert map_charset(classes, " ").rows == (0, len(classes) - 1)  # the space is the source's last class
    rng = np.random.default_rng(0)
    weight, bias = (
        rng.normal(size=(len(classes), 8)).astype(np.float32),
        rng.normal(size=len(classes)).astype(np.float32),
    )
    out_w, out_b = mapped_head(weight, bias, mapping)
    assert np.array_equal(out_w[1], weight[classes.index("A")]) and out_b[2] == bias[classes.index("1")]
    assert out_b[3] == min(bias[r] for r in mapping.rows if r is not None)  # a new character starts unlikely
    assert np.abs(out_w[3]).max() > 0


def test_new_characters_get_new_rows_in_the_imported_head() -> None:
    network, cfg, report = load_source("ppocrv6", DEFAULT_CHARSET + "\ue000")
    assert report.new_chars == "\ue000" and report.kept_chars == len(DEFAULT_CHARSET)
    assert network.fc.out_features == len(DEFAULT_CHARSET) + 2


def test_a_charset_that_cannot_be_mapped_is_refused(classes) -> None:
    with pytest.raises(ModelError, match="none of its 2 characters"):
        map_charset(classes, "\ue000\ue001")
    with pytest.raises(ModelError, match="duplicate"):
        map_charset(classes, "AA")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_source_file_with_an_unknown_checksum_is_refused(name: str, tmp_path: Path) -> None:
    changed = tmp_path / Path(SOURCES[name].file).name
    shutil.copy(source_file(SOURCES[name]), changed)
    with open(changed, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256"):
        load_source(name, path=changed)


def test_a_missing_source_package_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name, *a))
    with pytest.raises(EdgeOCRError, match=r"rapidocr.*'train' extra"):
        load_source("ppocrv6")


def test_a_missing_network_package_names_the_extra(monkeypatch) -> None:
    from edgeocr.models.ppocr import RAPIDOCR_NETWORKS

    monkeypatch.setitem(sys.modules, RAPIDOCR_NETWORKS, None)
    with pytest.raises(EdgeOCRError, match="'train' extra"):
        build_from_config(default_config("ppocrv6_small"))


@pytest.fixture(scope="module")
def tiny_crops(tmp_path_factory) -> Path:
    """Eight synthetic crops as a user's folder."""
    from edgeocr.synth.dataset import SynthJob, synthesize

    out = tmp_path_factory.mktemp("crops") / "crops"
    synthesize(SynthJob(kind="lines", count=8, seed=3, out=out, workers=1), progress=False)
    return out


@pytest.fixture(scope="module")
def finetuned(tiny_crops: Path, tmp_path_factory) -> Path:
    """Two steps of the imported architecture from its pretrained weights (one, then one more on resume)."""
    out = tmp_path_factory.mktemp("run") / "run"
    base = dict(
        arch="ppocrv6_small",
        init=Path("pretrained"),
        data=(tiny_crops,),
        val=tiny_crops,
        batch_size=4,
        epochs=100,
        lr=1e-5,
        workers=0,
        accelerator="cpu",
        progress_bar=False,
        distill_weight=1.0,
        freeze_stages=3,
        report_data=(tiny_crops,),
        report_every_n_steps=1,
        checkpoint_every_n_steps=1,
        early_stopping_patience=None,
        out=out,
    )
    run_training(TrainConfig(max_steps=1, **base))
    run_training(TrainConfig(max_steps=2, **base), resume=True)
    return out / "model.onnx"


@pytest.mark.slow
def test_two_step_finetune_exports_a_model_the_runtime_reads(finetuned: Path, tiny_crops: Path) -> None:
    metrics = json.loads((finetuned.parent / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["resumed_from_step"] == 1 and metrics["init"] == "pretrained"
    assert not weights_path(finetuned).exists()  # the .onnx is the fine-tuning weights
    recognizer = OnnxRecognizer(finetuned)
    assert recognizer.config.arch == "ppocrv6_small" and recognizer.config.input_height == 48
    assert recognizer.config.charset == DEFAULT_CHARSET
    samples, _ = read_labels(tiny_crops)
    images = [read_image(s.path) for s in samples]
    # Round trip: the ONNX gives back the trainable network, which computes what ONNX Runtime computes.
    network, cfg = load_exported(finetuned)
    for image, probs, line in zip(images, recognizer.recognize_probs(images), recognizer.recognize(images)):
        with torch.no_grad():
            ours = torch.softmax(network(torch.from_numpy(prepare_line(image, cfg)[None])), -1).numpy()[0]
        assert np.abs(ours - probs).max() < 1e-4
        assert greedy_decode(ours.astype(np.float64), cfg.charset_obj).text == line.text
    readings = read_report(finetuned.parent / REPORT_FILE)
    assert [r["step"] for r in readings] == [0, 1, 2]
    assert all(0 <= r["sets"][str(tiny_crops)]["ALL"]["char_accuracy"] <= 100 for r in readings)


@pytest.mark.slow
def test_frozen_stages_do_not_move(finetuned: Path) -> None:
    start, _, _ = load_source("ppocrv6")
    after, _ = load_exported(finetuned)
    stem = "backbone.conv1.stem1.conv.weight"
    assert torch.equal(start.state_dict()[stem], after.state_dict()[stem])  # stage 1 of 3 frozen
    head = "fc.weight"
    assert not torch.equal(start.state_dict()[head], after.state_dict()[head])


@pytest.mark.slow
def test_finetune_starts_from_an_exported_model_through_the_importer(finetuned: Path) -> None:
    start = starting_model(str(finetuned))
    assert start.init == finetuned and start.cfg.arch == "ppocrv6_small"
    tampered = finetuned.parent / "tampered" / "model.onnx"
    tampered.parent.mkdir()
    shutil.copy(finetuned.with_suffix(".json"), tampered.with_suffix(".json"))
    tampered.write_bytes(finetuned.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="SHA-256"):
        starting_model(str(tampered))


def test_user_labels_outside_the_charset_are_named_by_file_and_line(tiny_crops: Path, tmp_path: Path, capsys) -> None:
    crops = tmp_path / "crops"
    shutil.copytree(tiny_crops, crops)
    first = (crops / "labels.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
    with open(crops / "labels.tsv", "a", encoding="utf-8") as f:
        f.write(f"{first}\tLOT \ue000 12\n")
    with pytest.raises(DataError, match=r"labels\.tsv:9: characters"):
        finetune_command(init="ppocrv6", data=crops, out=tmp_path / "a", steps=1, progress=False)
    assert main(["finetune", "--init", "ppocrv6", "--data", str(crops), "--out", str(tmp_path / "b")]) == 2
    assert "labels.tsv:9" in capsys.readouterr().err
    with pytest.raises(EdgeOCRError, match="--add-chars needs a pretrained source"):
        starting_model("default", add_chars="\ue000")
    assert starting_model("ppocrv6", add_chars="Ω").cfg.charset == ASCII_CHARSET + "Ω"


@pytest.mark.slow
def test_finetune_from_the_pretrained_source_in_one_command(tiny_crops: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ft"
    assert (
        main(
            [
                "finetune",
                "--init",
                "ppocrv6",
                "--data",
                str(tiny_crops),
                "--out",
                str(out),
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--lr",
                "1e-6",
                "--holdout",
                "0.25",
                "--freeze-stages",
                "6",
                "--workers",
                "0",
                "--accelerator",
                "cpu",
                "--threads",
                "1",
                "--val-lines",
                "8",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads((out / "finetune_report.json").read_text())
    assert f"held-out {report['holdout_samples']} crops" in printed and "synthetic validation" in printed
    assert report["init"] == "ppocrv6" and report["distill_weight"] == 1.0 and report["steps"] == 1
    # At a learning rate of 1e-6 one step changes no read: before and after are the same model's.
    assert report["changed"] == [] and report["before"]["char_accuracy"] == report["after"]["char_accuracy"]
    assert OnnxRecognizer(out / "model.onnx").sidecar.derived_from.licence == "Apache-2.0"


def test_a_shipped_imported_model_teaches_through_its_onnx_alone() -> None:
    # edgeocr optimize MODEL --distill-from accurate: the teacher's weights are its ONNX initialisers.
    from edgeocr.optimize.networks import load_network, resolve_trainable_model
    from edgeocr.runtime.models import resolve_model

    onnx_path = resolve_model("accurate")
    assert resolve_trainable_model("accurate", "teacher") == (onnx_path, onnx_path)
    cfg, network = load_network(onnx_path)
    assert cfg.arch == "ppocrv6_small" and not network.training
    recognizer = OnnxRecognizer(onnx_path)
    line = prepare_line(read_image(SAMPLES / "container/00000001.png"), cfg)[None]
    with torch.no_grad():
        ours = torch.softmax(network(torch.from_numpy(line)), -1).numpy()[0]
    (theirs,) = recognizer.recognize_probs([read_image(SAMPLES / "container/00000001.png")])
    assert np.abs(ours[: len(theirs)] - theirs).max() < 1e-4
