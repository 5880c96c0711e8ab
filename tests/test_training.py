"""Training: datasets, batching, a short run end to end, resume after SIGKILL, bad samples, errors.

Runs use the tiny architectures, a few steps and a handful of samples: they check the plumbing
(checkpoints, export, resume, counting), not that the model learns.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")
pytest.importorskip("rapidfuzz")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from edgeocr.core.errors import DataError, EdgeOCRError  # noqa: E402
from edgeocr.core.lineimage import padded_width, to_line_strip  # noqa: E402
from edgeocr.data.datasets import (  # noqa: E402
    LabelledFolder,
    LineCollator,
    LineItem,
    LmdbLines,
    Mixed,
    SkippedSample,
    SyntheticLines,
    min_ctc_frames,
)
from edgeocr.models.factory import default_config  # noqa: E402
from edgeocr.runtime.recognizer import OnnxRecognizer  # noqa: E402
from edgeocr.synth.dataset import SynthJob, synthesize  # noqa: E402
from edgeocr.train.command import train_command  # noqa: E402
from edgeocr.train.trainer import TrainConfig, run_training  # noqa: E402

torch.set_num_threads(2)
CFG = default_config("crnn_tiny", max_width=256)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """40 synthetic line crops with labels.tsv."""
    out = tmp_path_factory.mktemp("data") / "lines"
    synthesize(SynthJob(kind="lines", count=40, seed=1, out=out, workers=1), progress=False)
    return out


def tiny_config(out: Path, **overrides) -> TrainConfig:
    values = dict(
        arch="crnn_tiny",
        synthetic_per_epoch=32,
        val_synthetic=16,
        batch_size=8,
        lr=3e-3,
        epochs=3,
        max_steps=6,
        workers=0,
        accelerator="cpu",
        checkpoint_every_n_steps=2,
        progress_bar=False,
        out=out,
    )
    return TrainConfig(**{**values, **overrides})


# --- datasets and batching ----------------------------------------------------------------------


def test_synthetic_lines_are_reproducible_and_new_each_epoch() -> None:
    first, again = SyntheticLines(4, seed=3), SyntheticLines(4, seed=3)
    epoch0 = [first[i].text for i in range(4)]
    assert epoch0 == [again[i].text for i in range(4)]
    first.set_epoch(1)
    assert [first[i].text for i in range(4)] != epoch0
    assert first[0].source.endswith("sample=4")  # index 0 of epoch 1 is sample 1 * 4 + 0


class _FailingGenerator:
    """Fails on sample 5 the way a bad render does, or on every sample the way a missing font does."""

    def __init__(self, error: Exception, real) -> None:
        self.error, self.real = error, real

    def sample(self, number: int):
        if isinstance(self.error, EdgeOCRError) or number == 5:
            raise self.error
        return self.real.sample(number)


@pytest.mark.parametrize("kind", ["lines", "scenes"])
def test_a_failed_render_is_one_skipped_sample_and_a_setup_error_stops(kind: str) -> None:
    from edgeocr.data.scene_dataset import SyntheticScenes

    dataset = SyntheticLines(4, seed=3) if kind == "lines" else SyntheticScenes(4, seed=3)
    real = dataset._generator()
    dataset._synthesizer = _FailingGenerator(ValueError("bad warp"), real)
    dataset.set_epoch(1)  # index 1 of epoch 1 is sample 5
    skipped = dataset[1]
    what = "synthetic" if kind == "lines" else "synthetic scene"
    assert isinstance(skipped, SkippedSample)
    assert skipped.reason == f"{what} seed=3 sample=5: rendering failed: ValueError: bad warp"
    assert not isinstance(dataset[0], SkippedSample) and dataset[0].source == f"{what} seed=3 sample=4"
    dataset._synthesizer = _FailingGenerator(EdgeOCRError("no font for dot-matrix"), real)
    with pytest.raises(EdgeOCRError, match="no font"):
        dataset[0]


def test_mixed_draws_in_ratio_and_reshuffles_per_epoch() -> None:
    a = [LineItem(np.zeros((8, 8), np.uint8), "A", "a", f"a{i}") for i in range(3)]
    b = [LineItem(np.zeros((8, 8), np.uint8), "B", "b", f"b{i}") for i in range(50)]
    mixed = Mixed([a, b], ratios=[0.5, 0.5], length=20, seed=0)
    texts = [mixed[i].text for i in range(len(mixed))]
    assert texts.count("A") == 10 and texts.count("B") == 10  # the small set is cycled through
    order0 = [mixed[i].source for i in range(20)]
    mixed.set_epoch(1)
    assert [mixed[i].source for i in range(20)] != order0
    mixed.set_epoch(0)
    assert [mixed[i].source for i in range(20)] == order0


def test_collator_prepares_like_the_runtime_and_drops_bad_samples() -> None:
    rng = np.random.default_rng(0)
    narrow = rng.integers(0, 255, (20, 60), dtype=np.uint8)
    wide = rng.integers(0, 255, (30, 300, 3), dtype=np.uint8)
    items = [
        LineItem(narrow, "AB1", "lot", "n"),
        SkippedSample("labels.tsv:7: broken"),
        None,
        LineItem(wide, "HELLO", "lot", "w"),
        LineItem(narrow, "é", "lot", "bad-char"),
        LineItem(np.zeros((20, 8), np.uint8), "A" * 12, "lot", "too-long"),
    ]
    batch = LineCollator(CFG)(items)
    assert batch.texts == ["AB1", "HELLO"]
    widths = [padded_width(to_line_strip(img, CFG).shape[1], CFG) for img in (narrow, wide)]
    assert batch.images.shape == (2, 1, CFG.input_height, max(widths))
    assert batch.input_lengths.tolist() == [w // CFG.frame_stride for w in widths]
    assert batch.target_lengths.tolist() == [3, 5]
    assert batch.targets.tolist() == CFG.charset_obj.encode("AB1HELLO")
    assert len(batch.skipped) == 4 and batch.skipped[0] == "labels.tsv:7: broken"
    assert min_ctc_frames([5, 5, 6]) == 4


def test_lmdb_lines_open_lazily_in_each_worker(tmp_path: Path) -> None:
    out = tmp_path / "lmdb"
    synthesize(SynthJob(kind="lines", count=12, seed=2, out=out, workers=1, format="lmdb"), progress=False)
    dataset = LmdbLines(out)
    assert len(dataset) == 12 and dataset[0].text
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=LineCollator(CFG))
    texts = [text for batch in loader for text in batch.texts]
    assert texts == [dataset[i].text for i in range(12)]


# --- training runs ------------------------------------------------------------------------------


def test_trains_on_synthetic_and_a_folder_and_exports_the_best_model(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    model_path = train_command(
        arch="crnn_tiny",
        data=[folder],
        val=None,
        synthetic=32,
        epochs=2,
        batch_size=8,
        lr=3e-3,
        workers=2,
        precision="auto",
        accelerator="cpu",
        devices="1",
        out=out,
        resume=False,
        seed=0,
        max_steps=10,
        val_synthetic=16,
        checkpoint_every_n_steps=3,
        progress=False,
    )
    assert model_path == out / "model.onnx"
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "model.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["precision"] == "32-true"
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    assert 0.0 <= metrics["val_char_acc"] <= 1.0 and 0.0 <= metrics["val_exact"] <= 1.0
    assert metrics["train_samples_per_epoch"] == 72 and metrics["val_samples"] == 16
    assert metrics["skipped_samples"] == 0 and metrics["device"]["type"] == "cpu"
    # 9 steps an epoch: the final weights (step 10) were validated after training, and the export is
    # whichever of them and the best epoch-end checkpoint scored higher
    check = metrics["final_weights_validation"]
    assert check["step"] == 10 and check["previous_best"] is not None
    assert check["became_best"] == (check["score"] > check["previous_best"])
    assert metrics["val_char_acc"] == pytest.approx(max(check["score"], check["previous_best"]))
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["arch"] == "crnn_tiny" and saved["data"] == [str(folder)]

    recognizer = OnnxRecognizer(model_path)
    image = next(p for p in folder.rglob("*.png"))
    import cv2

    (line,) = recognizer.recognize([cv2.imread(str(image))])
    assert isinstance(line.text, str) and 0.0 <= line.confidence <= 1.0

    with pytest.raises(EdgeOCRError, match="already holds a training run"):
        run_training(TrainConfig.model_validate(saved), resume=False)


RUN_UNTIL_KILLED = """
import sys, time
from pathlib import Path
from edgeocr.train import module, trainer

step = module.RecognizerModule.training_step
def slow_step(self, batch, batch_idx):
    time.sleep(0.25)  # slow enough that the test kills the run well before its last step
    return step(self, batch, batch_idx)
module.RecognizerModule.training_step = slow_step
cfg = trainer.TrainConfig.model_validate_json(Path(sys.argv[1]).read_text())
trainer.run_training(cfg, resume=False)
"""


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path: Path, killed_run) -> None:
    out = tmp_path / "run"
    cfg = tiny_config(out, arch="svtr_tiny", epochs=5, max_steps=14, checkpoint_every_n_steps=2)
    config_file = tmp_path / "cfg.json"
    config_file.write_text(cfg.to_json())
    saved_step = killed_run(RUN_UNTIL_KILLED, config_file, out)
    assert 0 < saved_step < 14
    assert not (out / "model.onnx").exists()

    run_training(cfg, resume=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == saved_step
    assert metrics["steps"] == 14  # continued to the target, not restarted from 0
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 14
    assert OnnxRecognizer(out / "model.onnx").config.arch == "svtr_tiny"


def test_bad_samples_are_skipped_and_counted(folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad"
    good = (folder / "labels.tsv").read_text(encoding="utf-8").splitlines()[:8]
    for line in good:
        target = data / line.split("\t")[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / line.split("\t")[0], target)
    (data / "junk").mkdir()
    (data / "junk" / "garbage.png").write_bytes(b"this is not an image" * 10)
    lines = [
        good[0],
        "no-tab-on-this-line",
        *good[1:4],
        f"{good[4].split(chr(9))[0]}\tLOT Ä1",
        *good[5:],
        "junk/garbage.png\tABC123",
    ]
    (data / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    out = tmp_path / "run"
    run_training(tiny_config(out, data=(data,), val=data, synthetic_per_epoch=0, batch_size=4, max_steps=4))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4
    assert metrics["skipped_samples"] == 3
    reasons = "\n".join(metrics["skipped_reasons"])
    assert "labels.tsv:2: no TAB" in reasons
    assert "labels.tsv:6: characters 'Ä'" in reasons
    assert "labels.tsv:10: " in reasons and "garbage.png" in reasons


def test_an_empty_labels_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "labels.tsv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=str(tmp_path / "labels.tsv")):
        LabelledFolder(tmp_path)
    with pytest.raises(DataError, match="labels.tsv"):
        run_training(tiny_config(tmp_path / "run", data=(tmp_path,)))


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeOCRError, match="cannot resume: no checkpoint at .*last.ckpt"):
        train_command(
            arch="crnn_tiny",
            data=[],
            val=None,
            synthetic=8,
            epochs=1,
            batch_size=4,
            lr=1e-3,
            workers=0,
            precision="auto",
            accelerator="cpu",
            devices=1,
            out=tmp_path / "run",
            resume=True,
        )


def test_invalid_settings_are_reported_with_the_field(tmp_path: Path) -> None:
    with pytest.raises(EdgeOCRError, match="arch.*unknown architecture"):
        train_command(
            arch="resnet",
            data=[],
            val=None,
            synthetic=8,
            epochs=1,
            batch_size=4,
            lr=1e-3,
            workers=0,
            precision="auto",
            accelerator="cpu",
            devices=1,
            out=tmp_path,
            resume=False,
        )
    with pytest.raises(EdgeOCRError, match="nothing to train on"):
        train_command(
            arch="crnn_tiny",
            data=[],
            val=None,
            synthetic=0,
            epochs=1,
            batch_size=4,
            lr=1e-3,
            workers=0,
            precision="auto",
            accelerator="cpu",
            devices=1,
            out=tmp_path,
            resume=False,
        )
    with pytest.raises(EdgeOCRError, match="16-mixed needs a CUDA GPU"):
        train_command(
            arch="crnn_tiny",
            data=[],
            val=None,
            synthetic=8,
            epochs=1,
            batch_size=4,
            lr=1e-3,
            workers=0,
            precision="16-mixed",
            accelerator="cpu",
            devices=1,
            out=tmp_path / "run",
            resume=False,
        )


@pytest.mark.slow
def test_a_resume_on_another_validation_set_chooses_the_best_again(tmp_path: Path) -> None:
    # Scores of two validation sets cannot be compared: a best score kept from the old set once made
    # a resumed run export weights 5000 steps older than its last ones.
    out = tmp_path / "run"
    run_training(tiny_config(out, epochs=1, max_steps=4), resume=False)  # validated at step 4
    first = json.loads((out / "metrics.json").read_text())

    run_training(tiny_config(out, epochs=2, max_steps=6), resume=True)  # same set: the old best stands
    check = json.loads((out / "metrics.json").read_text())["final_weights_validation"]
    assert check["step"] == 6 and check["previous_best"] == pytest.approx(first["val_char_acc"])

    with pytest.warns(UserWarning, match="validation set differs"):
        run_training(tiny_config(out, epochs=3, max_steps=7, val_synthetic=12), resume=True)
    metrics = json.loads((out / "metrics.json").read_text())
    check = metrics["final_weights_validation"]
    assert check["step"] == 7 and check["previous_best"] is None and check["became_best"]
    assert metrics["val_samples"] == 12 and metrics["val_char_acc"] == pytest.approx(check["score"])
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["global_step"] == 7


# --- no usable sample: the run stops (exit 2) before it trains or exports anything ---------------


def _undecodable_folder(root: Path, count: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a PNG" * i)
    (root / "labels.tsv").write_text("".join(f"{i}.png\tLOT {i}\n" for i in range(count)), encoding="utf-8")
    return root


def test_training_on_a_folder_where_no_image_decodes_stops_with_exit_2(tmp_path: Path, capsys) -> None:
    from edgeocr.cli import main

    data = _undecodable_folder(tmp_path / "broken")
    out = tmp_path / "run"
    args = ["train", "--arch", "crnn_tiny", "--data", str(data), "--synthetic", "0", "--epochs", "1"]
    code = main([*args, "--batch-size", "2", "--workers", "0", "--accelerator", "cpu", "--out", str(out), "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{data}: no usable sample among its 6" in err and "nothing was trained" in err
    assert "labels.tsv:1:" in err and "Traceback" not in err
    assert not (out / "model.onnx").exists() and not (out / "checkpoints").exists()
    # mixed with synthetic lines too, and as the validation set: a dataset with no usable sample is named
    with pytest.raises(DataError, match="no usable sample"):
        run_training(tiny_config(tmp_path / "run2", data=(data,)))
    with pytest.raises(DataError, match=f"{data}: no usable sample"):
        run_training(tiny_config(tmp_path / "run3", val=data))


def test_training_where_every_label_fails_stops_before_training(tmp_path: Path) -> None:
    data = tmp_path / "long"
    data.mkdir()
    import cv2

    for i in range(4):  # 16 px wide lines give 8 frames: a 30-character text cannot be trained on
        cv2.imwrite(str(data / f"{i}.png"), np.full((32, 16), 200, np.uint8))
    (data / "labels.tsv").write_text("".join(f"{i}.png\t{'A' * 30}\n" for i in range(4)), encoding="utf-8")
    with pytest.raises(DataError, match="the image gives") as excinfo:
        run_training(tiny_config(tmp_path / "run", data=(data,), synthetic_per_epoch=0, val=None))
    assert "no usable sample among its 4" in str(excinfo.value)
    assert not (tmp_path / "run" / "model.onnx").exists()


def test_finetuning_on_crops_that_never_load_stops_with_exit_2(tmp_path: Path, export_trainable, capsys) -> None:
    from edgeocr.cli import main

    model = export_trainable("crnn_tiny", tmp_path / "m" / "model.onnx")
    data = _undecodable_folder(tmp_path / "crops")
    out = tmp_path / "ft"
    code = main(["finetune", "--init", str(model), "--data", str(data), "--out", str(out), "--steps", "2", "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no labelled crop can be read (6 images fail to load)" in err and "labels.tsv:3:" in err
    assert not (out / "model.onnx").exists()
