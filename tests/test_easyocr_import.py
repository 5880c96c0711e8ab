"""EasyOCR english_g2 imported from its installed packages: the same numbers as easyocr's own network,
our ONNX export through ONNX Runtime, the import command, fine-tuning and the errors a user meets.

``make test`` installs easyocr (``make peers``): nothing here skips; a missing package fails. A changed weights file is refused for every source in
tests/test_pretrained.py."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edgeocr.cli import main
from edgeocr.core.charset import ASCII_CHARSET
from edgeocr.core.ctc import greedy_decode
from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.images import read_image
from edgeocr.core.lineimage import prepare_line
from edgeocr.core.sidecar import load_sidecar, sidecar_path
from edgeocr.data.labels import read_labels
from edgeocr.models.easyocr import RIGHT_PAD, easyocr_model_class
from edgeocr.models.factory import build_from_config, default_config
from edgeocr.models.pretrained import SOURCES, easyocr_classes, import_recognizer, load_source, source_file
from edgeocr.models.weights import weights_path
from edgeocr.optimize.networks import load_network
from edgeocr.runtime.recognizer import OnnxRecognizer

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "lines"

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def package_network() -> torch.nn.Module:
    """easyocr's own network with the file's weights, as easyocr.Reader builds it (97 classes)."""
    network = easyocr_model_class()(input_channel=1, output_channel=256, hidden_size=256, num_class=97)
    state = torch.load(source_file(SOURCES["easyocr"]), map_location="cpu", weights_only=True)
    network.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return network.eval()


@pytest.fixture(scope="module")
def imported():
    return load_source("easyocr", ASCII_CHARSET)


@pytest.fixture(scope="module")
def exported(imported, tmp_path_factory) -> Path:
    return import_recognizer(tmp_path_factory.mktemp("imp") / "easyocr", "easyocr", ASCII_CHARSET)[0]


def _sample_lines(cfg) -> list[tuple[str, np.ndarray]]:
    samples, _ = read_labels(SAMPLES, strict=True)
    return [(s.text, prepare_line(read_image(s.path), cfg)[None]) for s in samples]


def _package_logits(network: torch.nn.Module, line: np.ndarray) -> torch.Tensor:
    # easyocr pads each line on the right with its last column (NormalizePAD); our module pads 4 more.
    padded = F.pad(torch.from_numpy(line), (0, RIGHT_PAD, 0, 0), mode="replicate")
    with torch.no_grad():
        return network(padded, None)[0]


def test_the_architecture_reads_64_px_lines_at_4_px_per_frame() -> None:
    cfg = default_config("easyocr_g2")
    assert (cfg.input_height, cfg.frame_stride) == (64, 4)
    network = build_from_config(cfg).eval()
    for width in (32, 200, 648):
        with torch.no_grad():
            assert network(torch.zeros(2, 1, 64, width)).shape == (2, width // 4, cfg.num_classes)
    with pytest.raises(ValueError, match="64 px"):
        build_from_config(cfg.model_copy(update={"input_height": 32}))


def test_the_module_is_the_package_network_on_the_sample_crops(imported, package_network) -> None:
    """Our charset: exactly the package's logits of those classes (same layers, same weights), same reads."""
    network, cfg, report = imported
    assert report.sha256 == SOURCES["easyocr"].sha256 and report.kept_chars == len(ASCII_CHARSET)
    classes = easyocr_classes()
    keep = [0] + [classes.index(c) for c in cfg.charset]
    lines = _sample_lines(cfg)
    assert len(lines) == 10
    for text, line in lines:
        with torch.no_grad():
            ours = network(torch.from_numpy(line))[0]
        theirs = _package_logits(package_network, line)
        assert ours.shape[0] == line.shape[-1] // 4 == theirs.shape[0]
        assert torch.equal(ours, theirs[:, keep]), text
        # Greedy reads: the package's over its 97 classes equals ours wherever its read fits our charset.
        best, previous, read = theirs.argmax(-1).tolist(), 0, []
        for index in best:
            if index not in (0, previous):
                read.append(classes[index])
            previous = index
        probs = torch.softmax(ours, -1).numpy().astype(np.float64)
        assert greedy_decode(probs, cfg.charset_obj).text == "".join(read), text


def test_the_exported_onnx_matches_the_module(imported, exported: Path) -> None:
    network, cfg, _ = imported
    import onnxruntime as ort

    assert OnnxRecognizer(exported).config.arch == "easyocr_g2"  # the runtime accepts it (frames checked)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    worst = 0.0
    for _text, line in _sample_lines(cfg):
        with torch.no_grad():
            ours = torch.softmax(network(torch.from_numpy(line)), -1).numpy()[0]
        onnx = session.run(None, {"image": line})[0][0]
        worst = max(worst, float(np.abs(ours - onnx).max()))
    assert worst < 1e-4


def test_import_writes_the_model_its_weights_and_provenance(exported: Path) -> None:
    sidecar = load_sidecar(sidecar_path(exported))
    assert sidecar.derived_from.source == "easyocr" and sidecar.derived_from.licence == "Apache-2.0"
    assert (REPO / "src" / sidecar.derived_from.notice).is_file()
    # The LSTMs export as fused ONNX weights: the fine-tuning weights travel as model.pt (float16, as
    # every model.pt), and load back within float16 rounding, giving the same best class on every frame.
    cfg, network = load_network(weights_path(exported))
    assert cfg.arch == "easyocr_g2" and cfg.charset == ASCII_CHARSET
    line = torch.rand(1, 1, 64, 96)
    reference, _, _ = load_source("easyocr", ASCII_CHARSET)
    with torch.no_grad():
        loaded, original = network(line), reference(line)
    assert (loaded - original).abs().max() < 0.05
    assert torch.equal(loaded.argmax(-1), original.argmax(-1))


def test_the_import_command_refuses_an_existing_folder(exported: Path, capsys) -> None:
    before = exported.read_bytes()
    assert main(["import-recognizer", "easyocr", "--out", str(exported.parent)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert exported.read_bytes() == before


def test_the_import_command_prints_what_it_did(tmp_path: Path, capsys) -> None:
    assert main(["import-recognizer", "easyocr", "--out", str(tmp_path / "m"), "--charset", "default"]) == 0
    printed = capsys.readouterr().out
    assert "EasyOCR english_g2" in printed and "75 characters, 75 from the source" in printed
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.onnx", "model.pt"]


def test_a_missing_easyocr_package_says_how_to_install_it(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "easyocr" else real(name, *a))
    with pytest.raises(EdgeOCRError, match="make peers"):
        build_from_config(default_config("easyocr_g2"))


@pytest.mark.slow
def test_finetune_from_easyocr_in_one_command(tmp_path: Path, capsys) -> None:
    from edgeocr.synth.dataset import SynthJob, synthesize

    crops = tmp_path / "crops"
    synthesize(SynthJob(kind="lines", count=8, seed=3, out=crops, workers=1), progress=False)
    out = tmp_path / "ft"
    args = ["finetune", "--init", "easyocr", "--data", str(crops), "--out", str(out), "--steps", "1"]
    args += ["--batch-size", "4", "--lr", "1e-6", "--holdout", "0.25", "--freeze-stages", "1", "--workers", "0"]
    args += ["--accelerator", "cpu", "--threads", "1", "--val-lines", "8"]
    assert main(args) == 0
    report = json.loads((out / "finetune_report.json").read_text())
    assert report["init"] == "easyocr" and report["steps"] == 1
    recognizer = OnnxRecognizer(out / "model.onnx")
    assert recognizer.config.arch == "easyocr_g2" and recognizer.sidecar.derived_from.source == "easyocr"
    assert weights_path(out / "model.onnx").is_file()
