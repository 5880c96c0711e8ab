"""Recognition networks: shapes, training step, parameter budgets, config and ONNX export."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pydantic
import pytest
import torch
from torch import nn

import edgeocr
from edgeocr.core.charset import DEFAULT_CHARSET, Charset
from edgeocr.core.sidecar import sha256_hex
from edgeocr.models import RecognizerConfig, available_architectures, build_recognizer, export_onnx
from edgeocr.models.factory import count_parameters

TINY_ARCHS = ("crnn_tiny", "svtr_tiny")
HEIGHT = 32

torch.set_num_threads(2)


def test_tiny_variants_exist_for_every_family() -> None:
    archs = available_architectures()
    assert set(TINY_ARCHS) <= set(archs)
    assert {"crnn_s", "crnn_m", "crnn_l", "svtr_s"} <= set(archs)


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize(("batch", "width"), [(2, 64), (1, 96), (3, 512)])
def test_forward_gives_one_frame_per_four_pixels(arch: str, batch: int, width: int) -> None:
    model, cfg = build_recognizer(arch)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(batch, 1, HEIGHT, width))
    assert logits.shape == (batch, width // 4, Charset().num_classes)
    assert cfg.frames_for_width(width) == width // 4
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_ctc_training_step_is_finite_and_learns(arch: str) -> None:
    torch.manual_seed(0)
    model, cfg = build_recognizer(arch)
    model.train()
    charset = cfg.charset_obj
    texts = ["LOT A12", "2024-05-01"]
    targets = torch.tensor([c for t in texts for c in charset.encode(t)])
    target_lengths = torch.tensor([len(t) for t in texts])
    images = torch.rand(2, 1, HEIGHT, 128)
    input_lengths = torch.full((2,), 128 // 4, dtype=torch.long)
    ctc = nn.CTCLoss(blank=0, zero_infinity=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    losses = []
    for step in range(8):
        log_probs = model(images).log_softmax(-1).transpose(0, 1)  # CTCLoss wants [T, N, C]
        loss = ctc(log_probs, targets, input_lengths, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert sum(float(g.abs().sum()) for g in grads) > 0.0
            assert model.head.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("arch", "low", "high"),
    [
        ("crnn_s", 0.3e6 * 0.65, 0.3e6 * 1.35),
        ("crnn_m", 1e6 * 0.65, 1e6 * 1.35),
        ("crnn_l", 4e6 * 0.65, 4e6 * 1.35),
        ("svtr_s", 1e6, 3e6),
        ("crnn_tiny", 0, 50_000),
        ("svtr_tiny", 0, 50_000),
    ],
)
def test_parameter_budgets(arch: str, low: float, high: float) -> None:
    model, _ = build_recognizer(arch)
    assert low <= count_parameters(model) <= high


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_recognizer("resnet")


def test_config_is_frozen_validated_and_documented() -> None:
    cfg = RecognizerConfig(arch="crnn_tiny")
    assert cfg.charset == DEFAULT_CHARSET and cfg.num_classes == len(DEFAULT_CHARSET) + 1
    with pytest.raises(pydantic.ValidationError):
        cfg.input_height = 48  # type: ignore[misc]
    for bad in (
        {"input_height": 40},  # not a multiple of 16
        {"min_width": 256, "max_width": 128},
        {"max_width": 500},  # not a multiple of width_multiple
        {"charset": "AAB"},  # duplicate
        {"std": 0.0},
        {"width_policy": "crop"},
        {"unknown_field": 1},
    ):
        with pytest.raises(pydantic.ValidationError):
            RecognizerConfig(arch="crnn_tiny", **bad)
    for name, field in RecognizerConfig.model_fields.items():
        assert field.description, f"RecognizerConfig.{name} has no description"


def test_overrides_and_charset_reach_the_network() -> None:
    model, cfg = build_recognizer("crnn_tiny", charset="0123456789", input_height=48, max_width=256)
    assert (cfg.input_height, cfg.max_width, cfg.charset) == (48, 256, "0123456789")
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 1, 48, 64)).shape == (1, 16, 11)


def _onnx_matches_torch(model: nn.Module, path, widths_and_batches) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    rng = np.random.default_rng(0)
    for batch, width in widths_and_batches:
        images = rng.standard_normal((batch, 1, HEIGHT, width)).astype(np.float32)
        with torch.no_grad():
            expected = torch.log_softmax(model(torch.from_numpy(images)), dim=-1).numpy()
        (probs,) = session.run(["probs"], {"image": images})
        assert probs.shape == expected.shape
        np.testing.assert_allclose(probs, np.exp(expected), atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.log(probs), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", [*TINY_ARCHS, "crnn_s", "crnn_m", "svtr_s"])
def test_onnx_export_matches_pytorch_at_dynamic_batch_and_width(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    model, cfg = build_recognizer(arch, max_width=256)
    model.train()  # export must switch to eval (dropout, batch norm) and then restore the mode
    path = export_onnx(model, cfg, tmp_path / f"{arch}.onnx")
    assert model.training
    _onnx_matches_torch(model, path, [(1, 48), (3, 200), (2, 256)])


def test_export_writes_matching_sidecar_atomically(tmp_path) -> None:
    model, cfg = build_recognizer("crnn_tiny", charset="0123456789ABC-", decoder="beam")
    path = export_onnx(model, cfg, tmp_path / "models" / "lot.onnx")
    assert sorted(p.name for p in path.parent.iterdir()) == ["lot.json", "lot.onnx"]  # no temp files left
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["onnx_sha256"] == sha256_hex(path.read_bytes())
    assert sidecar["edgeocr_version"] == edgeocr.__version__
    assert sidecar["input_name"] == "image" and sidecar["output_name"] == "probs"
    assert sidecar["output_kind"] == "probs"
    assert sidecar["charset_fingerprint"] == Charset("0123456789ABC-").fingerprint
    assert RecognizerConfig.model_validate(sidecar["config"]) == cfg
    assert sidecar["config"]["decoder"] == "beam"
    assert {"input_height", "max_width", "min_width", "width_policy", "mean", "std", "charset"} <= set(
        sidecar["config"]
    )


def test_export_refuses_a_path_without_onnx_suffix(tmp_path) -> None:
    model, cfg = build_recognizer("crnn_tiny")
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(model, cfg, tmp_path / "model.bin")
