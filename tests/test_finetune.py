"""Fine-tuning: weights beside the ONNX, starting from them, the holdout split, the before/after report,
and the errors a user meets (foreign charset, bad labels)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("lightning")

import torch  # noqa: E402

from edgeocr.cli import main  # noqa: E402
from edgeocr.core.errors import DataError, EdgeOCRError, ModelError  # noqa: E402
from edgeocr.data.datasets import LineCollator, LineItem  # noqa: E402
from edgeocr.data.labels import read_labels  # noqa: E402
from edgeocr.models.export import export_onnx  # noqa: E402
from edgeocr.models.factory import build_recognizer  # noqa: E402
from edgeocr.models.weights import load_weights, save_weights, weights_path  # noqa: E402
from edgeocr.synth.dataset import SynthJob, synthesize  # noqa: E402
from edgeocr.train.finetune import finetune_command, resolve_init, split_holdout  # noqa: E402
from edgeocr.train.module import RecognizerModule  # noqa: E402
from edgeocr.train.trainer import TrainConfig, run_training  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def user_crops(tmp_path_factory) -> Path:
    """30 synthetic crops in category folders, plus one label the model's charset cannot spell."""
    out = tmp_path_factory.mktemp("user") / "crops"
    synthesize(SynthJob(kind="lines", count=30, seed=7, out=out, workers=1), progress=False)
    first = (out / "labels.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
    with open(out / "labels.tsv", "a", encoding="utf-8") as f:
        f.write(f"{first}\tLOT Ω12\n")
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An exported crnn_tiny with its model.pt, as a shipped model would be."""
    torch.manual_seed(0)
    network, cfg = build_recognizer("crnn_tiny", max_width=256)
    path = export_onnx(network.eval(), cfg, tmp_path_factory.mktemp("model") / "tiny.onnx")
    save_weights(network, cfg, weights_path(path))
    return path


def test_weights_round_trip_in_half_precision(tiny_model: Path) -> None:
    cfg, state = load_weights(weights_path(tiny_model))
    assert cfg.arch == "crnn_tiny"
    network, _ = build_recognizer("crnn_tiny", max_width=256)
    network.load_state_dict(state)  # every key present, every shape right
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    saved = torch.load(weights_path(tiny_model), weights_only=True)
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values() if v.is_floating_point())


def test_resolve_init_needs_weights_beside_an_onnx(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_init(tiny_model) == (tiny_model, weights_path(tiny_model))
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(tiny_model, lonely)
    with pytest.raises(ModelError, match="no fine-tuning weights"):
        resolve_init(lonely)
    with pytest.raises(ModelError, match="does not exist"):
        resolve_init(tmp_path / "missing.pt")


def test_holdout_is_per_category_seeded_and_disjoint(user_crops: Path) -> None:
    samples, _ = read_labels(user_crops, strict=False)
    train, held = split_holdout(samples, 0.25, seed=3)
    assert {s.line for s in train}.isdisjoint({s.line for s in held})
    assert len(train) + len(held) == len(samples)
    multi = {s.category for s in samples if sum(t.category == s.category for t in samples) > 1}
    assert multi <= {s.category for s in held}  # every category with 2+ crops is represented
    again = split_holdout(samples, 0.25, seed=3)
    assert [s.line for s in again[1]] == [s.line for s in held]


def test_finetune_trains_from_the_init_weights_and_reports_before_and_after(
    user_crops: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ft"
    with pytest.raises(DataError, match=r"labels\.tsv:31: characters 'Ω'"):  # stops by default, naming the line
        finetune_command(init=str(tiny_model), data=user_crops, out=tmp_path / "refused", steps=4, progress=False)
    report = finetune_command(
        init=str(tiny_model),
        data=user_crops,
        out=out,
        synthetic_ratio=0.5,
        holdout=0.25,
        steps=4,
        batch_size=8,
        lr=1e-3,
        workers=0,
        accelerator="cpu",
        progress=False,
        threads=1,
        skip_bad_labels=True,
    )
    # With --skip-bad-labels, the label the charset cannot spell is skipped with its file and line.
    assert any("labels.tsv:31" in r and "not in the model's charset" in r for r in report["skipped_lines"])
    assert report["holdout_samples"] + report["train_samples"] == 30
    assert report["before"]["n"] == report["after"]["n"] == report["holdout_samples"]
    assert report["steps"] == 4
    assert (out / "finetune_report.md").read_text().startswith("# Fine-tuning report")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == str(weights_path(tiny_model)) and metrics["exported"] == "last"
    held = (out / "split" / "holdout.tsv").read_text().splitlines()
    trained = (out / "split" / "train.tsv").read_text().splitlines()
    assert len(held) == report["holdout_samples"] and not set(held) & set(trained)
    assert weights_path(out / "model.onnx").is_file()


def test_training_starts_from_init_weights(tiny_model: Path, tmp_path: Path) -> None:
    """With a zero learning rate, a run from init weights exports exactly those weights."""
    cfg = TrainConfig(
        arch="crnn_tiny",
        max_width=256,
        synthetic_per_epoch=16,
        val_synthetic=8,
        batch_size=8,
        lr=1e-12,
        epochs=1,
        max_steps=1,
        workers=0,
        accelerator="cpu",
        progress_bar=False,
        init=weights_path(tiny_model),
        export="last",
        out=tmp_path / "run",
    )
    model = run_training(cfg)
    _, start = load_weights(weights_path(tiny_model))
    _, end = load_weights(weights_path(model))
    conv = "backbone.features.0.0.weight"
    assert torch.allclose(start[conv], end[conv], atol=1e-3)


def test_init_from_another_charset_or_architecture_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    base = dict(
        synthetic_per_epoch=16,
        val_synthetic=8,
        batch_size=8,
        max_steps=1,
        workers=0,
        accelerator="cpu",
        progress_bar=False,
        init=weights_path(tiny_model),
        max_width=256,
    )
    with pytest.raises(EdgeOCRError, match="charset"):
        run_training(TrainConfig(arch="crnn_tiny", charset="0123456789", out=tmp_path / "a", **base))
    with pytest.raises(EdgeOCRError, match="arch"):
        run_training(TrainConfig(arch="svtr_tiny", out=tmp_path / "b", **base))


def test_cli_finetune_reports_a_missing_init_in_one_line(user_crops: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(["finetune", "--init", str(tmp_path / "nope.pt"), "--data", str(user_crops), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_width_chunks_give_the_same_loss_as_one_padded_batch() -> None:
    """Equal widths: chunking changes nothing (eval mode, so batch norm and dropout are fixed)."""
    module = RecognizerModule(build_recognizer("crnn_tiny")[1].model_dump(mode="json"), width_chunks=3).eval()
    import numpy as np

    rng = np.random.default_rng(0)
    items = [
        LineItem(rng.integers(0, 255, (32, 120), dtype=np.uint8), text, "", str(i))
        for i, text in enumerate(["AB1", "C", "LOT 77", "X9", "EXP 1/2", "Q"])
    ]
    batch = LineCollator(module.recognizer_config)(items)
    with torch.no_grad():
        full = module._log_probs_and_loss(batch)[1]
        chunked = module._chunked_losses(batch)[0]
    assert torch.allclose(full, chunked, atol=1e-5)


def test_export_command_turns_a_checkpoint_into_a_verified_model(tiny_model: Path, tmp_path: Path) -> None:
    from edgeocr.runtime.recognizer import OnnxRecognizer

    cfg = TrainConfig(
        arch="crnn_tiny",
        max_width=256,
        synthetic_per_epoch=16,
        val_synthetic=8,
        batch_size=8,
        epochs=1,
        max_steps=2,
        workers=0,
        accelerator="cpu",
        progress_bar=False,
        out=tmp_path / "run",
    )
    run_training(cfg)
    target = tmp_path / "exported" / "m.onnx"
    assert main(["export", "--weights", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--out", str(target)]) == 0
    recognizer = OnnxRecognizer(target)  # sidecar checksum verified on load
    assert recognizer.config.arch == "crnn_tiny" and weights_path(target).is_file()
    assert main(["export", "--weights", str(tmp_path / "nothing.ckpt"), "--out", str(target)]) == 2
