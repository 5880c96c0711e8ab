"""Pruning of exported recognisers (magnitude and structured), on tiny models and a few steps.

The figures that matter (speed, size and accuracy of the pruned default model) come from
``scripts/prune_compare.py``; these tests check the mechanics: the requested sparsity is reached
and survives export, structured pruning really removes channels (and only channels that can go
without changing what the rest computes), the outputs run in the torch-free runtime, bad inputs
are refused with clear errors, and the source model is never touched.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeocr.core.errors import EdgeOCRError, ModelError, OutputError
from edgeocr.models.factory import build_recognizer
from edgeocr.models.weights import load_weights, weights_path
from edgeocr.optimize.networks import load_network
from edgeocr.optimize.pruning import prune, prune_channels
from edgeocr.runtime.reader import Reader, ReaderConfig
from edgeocr.runtime.recognizer import OnnxRecognizer

FAST = dict(finetune_steps=2, batch_size=8, val_lines=8, workers=0)


def file_hashes(onnx: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(onnx.parent.iterdir())}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, export_trainable) -> Path:
    return export_trainable("crnn_tiny", tmp_path_factory.mktemp("source") / "tiny.onnx")


def lines() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (32, width), dtype=np.uint8) for width in (40, 120, 200)]


def test_magnitude_pruning_reaches_the_sparsity_and_the_model_runs_in_the_runtime(
    tiny_model: Path, tmp_path: Path
) -> None:
    before = file_hashes(tiny_model)
    result = prune(tiny_model, 0.6, "magnitude", tmp_path / "out", **FAST)
    stats = result.stats
    assert result.onnx_path == (tmp_path / "out" / "model.onnx").resolve()
    assert stats["sparsity"] == pytest.approx(0.6, abs=0.005)  # the mask survived fine-tuning
    assert stats["onnx_sparsity"] > 0.5  # ... and export (batch norms folded into the zeros' convs)
    assert stats["params_after"] == stats["params_before"] and stats["nonzero_params_after"] < stats["params_before"]
    assert stats["compressed_bytes_after"] < stats["compressed_bytes_before"]
    assert "no speed gain is claimed" in stats["speed"] and stats["finetune_steps"] == 2
    # Same shapes as the architecture: an ordinary weights file, which edgeocr finetune can start from.
    cfg, state = load_weights(weights_path(result.onnx_path))
    assert cfg.arch == "crnn_tiny" and (state["backbone.features.2.0.weight"] == 0).any()
    reads = Reader(ReaderConfig(model=str(result.onnx_path))).read_batch(lines())
    assert len(reads) == 3 and all(len(r) == 1 for r in reads)
    assert (tmp_path / "out" / "prune_stats.json").is_file()
    assert file_hashes(tiny_model) == before


def test_structured_pruning_removes_channels_and_the_onnx_runs_with_the_right_shape(
    tiny_model: Path, tmp_path: Path
) -> None:
    before = file_hashes(tiny_model)
    result = prune(tiny_model, 0.5, "structured", tmp_path / "out", channel_multiple=2, recovery_kl_weight=1.0, **FAST)
    stats = result.stats
    assert stats["finetune_steps"] == 2 and stats["finetune_losses"][0]["kl"] > 0  # the unpruned model taught it
    assert stats["params_after"] < stats["params_before"] and stats["macs_after"] < stats["macs_before"]
    assert stats["onnx_bytes_after"] < stats["onnx_bytes_before"]
    assert stats["channels"]["backbone.features.2.0"] == [8, 4]
    assert stats["channels"]["backbone.features.10.0"] == [8, 8]  # feeds the sequence model: kept
    recognizer = OnnxRecognizer(result.onnx_path)  # sidecar and checksum verified
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"image": np.zeros((3, 1, 32, 96), np.float32)})[0]
    assert probs.shape == (3, 24, recognizer.config.num_classes)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)
    # The pruned weights file rebuilds the pruned network, which computes what the ONNX model does.
    cfg, network = load_network(weights_path(result.onnx_path))
    with torch.no_grad():
        torch_probs = torch.softmax(network(torch.zeros(3, 1, 32, 96)), -1).numpy()
    assert np.allclose(torch_probs, probs, atol=1e-3)  # the .pt is float16
    assert file_hashes(tiny_model) == before


@pytest.mark.parametrize(
    ("arch", "kept"),
    [
        ("crnn_s", [8, 16, 32, 32, 48, 48, 96]),  # GRU: the last conv feeds it whole
        ("crnn_m", [16, 32, 48, 48, 64, 64, 64]),  # LSTM: the last conv is pruned with the LSTM's input columns
    ],
)
def test_structured_pruning_removes_dead_channels_without_changing_the_output(arch: str, kept: list[int]) -> None:
    """Every other channel of each prunable conv is made dead (zero conv rows and batch norm, zero inputs
    of whatever reads it): the pruner must pick exactly those and cut the matching inputs of the next
    layer, so the output stays the same. A misaligned dependency would cut live inputs and change it."""
    torch.manual_seed(0)
    network, cfg = build_recognizer(arch)
    network.eval()
    convs = [m for m in network.backbone.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in network.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    lstm = isinstance(network.sequence, nn.LSTM)
    with torch.no_grad():
        for index, (conv, norm) in enumerate(zip(convs, norms, strict=True)):
            last = index == len(convs) - 1
            if last and not lstm:
                break
            dead = torch.arange(0, conv.out_channels, 2)
            conv.weight[dead] = 0
            norm.weight[dead], norm.bias[dead] = 0, 0
            readers = (
                [network.sequence.weight_ih_l0, network.sequence.weight_ih_l0_reverse]
                if last
                else [convs[index + 1].weight]
            )
            for weight in readers:
                weight[:, dead] = 0
        images = torch.randn(2, 1, 32, 64)
        expected = network(images)
    prune_channels(network, cfg, 0.5, channel_multiple=8)
    assert [c.out_channels for c in convs] == kept and network.sequence.input_size == kept[-1]
    with torch.no_grad():
        assert torch.allclose(network(images), expected, atol=1e-5)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_a_ratio_outside_0_1_is_refused(tiny_model: Path, tmp_path: Path, ratio: float) -> None:
    with pytest.raises(EdgeOCRError, match="between 0 and 1"):
        prune(tiny_model, ratio, "magnitude", tmp_path / "out", **FAST)
    assert not (tmp_path / "out").exists()


def test_bad_models_methods_and_output_folders_are_refused(tiny_model: Path, tmp_path: Path, export_trainable) -> None:
    before = file_hashes(tiny_model)
    with pytest.raises(EdgeOCRError, match="unknown pruning method 'random'"):
        prune(tiny_model, 0.5, "random", tmp_path / "out", **FAST)
    no_weights = tmp_path / "no-weights" / "m.onnx"
    no_weights.parent.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_model.with_suffix(suffix), no_weights.with_suffix(suffix))
    with pytest.raises(ModelError, match=r"no trainable weights beside it \(m\.pt\)"):
        prune(no_weights, 0.5, "magnitude", tmp_path / "out", **FAST)
    no_sidecar = tmp_path / "no-sidecar" / "m.onnx"
    no_sidecar.parent.mkdir()
    for suffix in (".onnx", ".pt"):
        shutil.copy(tiny_model.with_suffix(suffix), no_sidecar.with_suffix(suffix))
    with pytest.raises(ModelError, match="sidecar .* is missing"):
        prune(no_sidecar, 0.5, "magnitude", tmp_path / "out", **FAST)
    # Writing into the model's own folder, or a folder above it, could replace or delete the source.
    for target in (tiny_model.parent, tiny_model.parent.parent):
        with pytest.raises(OutputError, match="holds the source model"):
            prune(tiny_model, 0.5, "structured", target, overwrite=True, **FAST)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="already exists"):
        prune(tiny_model, 0.5, "magnitude", tmp_path / "full", **FAST)
    svtr = export_trainable("svtr_tiny", tmp_path / "svtr" / "svtr.onnx")
    with pytest.raises(ModelError, match="CRNN family"):
        prune(svtr, 0.5, "structured", tmp_path / "out", **FAST)
    assert file_hashes(tiny_model) == before
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"


@pytest.mark.slow
def test_structured_pruning_of_the_pp_ocr_model_narrows_its_channel_mixers(tmp_path: Path) -> None:
    """accurate (PP-OCRv6 small): half of each channel mixer's hidden channels go, the rest of the
    network keeps its shape, the unpruned model teaches the recovery, and the result reloads."""

    result = prune("accurate", 0.5, "structured", tmp_path / "out", recovery_kl_weight=1.0, **FAST)
    stats = result.stats
    assert stats["channels"] and all(name.endswith("channel_mixer.expand") for name in stats["channels"])
    assert all(after == before // 2 for before, after in stats["channels"].values())
    assert stats["macs_after"] < 0.6 * stats["macs_before"] and stats["params_after"] < stats["params_before"]
    assert stats["finetune_losses"][-1]["kl"] > 0  # the unpruned model taught
    recognizer = OnnxRecognizer(result.onnx_path)
    assert recognizer.config.arch == "ppocrv6_small"
    assert len(recognizer.recognize([np.full((48, 160), 200, np.uint8)])) == 1
    # The pruned weights (model.pt beside it) win over the ONNX as the trainable weights, and reload.
    cfg, network = load_network(weights_path(result.onnx_path))
    expand = dict(network.named_modules())["backbone.blocks2.0.channel_mixer.expand"]
    assert expand.out_channels == 96
