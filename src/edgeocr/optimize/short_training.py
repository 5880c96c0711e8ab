"""Short training runs for pruning recovery and distillation, on the recogniser's Lightning module.

Both need the CTC training of ``edgeocr train`` (:class:`~edgeocr.train.module.RecognizerModule`:
loss, width chunks, AdamW with warm-up and cosine decay, greedy validation metrics) but not its run
management, and they train networks that ``run_training`` cannot build: a structurally pruned one
(layer widths no longer those of its architecture name) or a student with a teacher. So they put
their network into the module and drive it with a Trainer of their own: a fixed number of steps
on synthetic lines rendered on the fly (one pass over ``steps * batch_size`` new lines, in index
order: the data depend only on the seed), no checkpoints, then the held-out score.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import lightning as L
from lightning.pytorch.callbacks import Callback
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.datasets import InMemorySamples, LineCollator, SyntheticLines, render_synthetic
from edgeocr.train.module import TRAIN_CTC, TRAIN_KL, VAL_CHAR_ACC, VAL_EXACT, VAL_LOSS, FrozenTeacher, RecognizerModule
from edgeocr.train.run import HELD_OUT_SEED_OFFSET, resolve_precision

LOSS_CURVE_POINTS = 20  # the loss history is reported as this many window means


class ShortTrainingSettings(BaseModel):
    """How a short training run (pruning recovery, distillation) trains and scores its network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(ge=0, description="Optimizer steps; 0: no training, only the held-out score.")
    batch_size: int = Field(default=32, ge=1, description="Synthetic lines per step.")
    seed: int = Field(
        default=0,
        description="Seed of the synthetic training lines, of dropout and of the held-out "
        "set (seed + 1000003, as edgeocr train).",
    )
    lr: float = Field(default=1e-3, gt=0, description="Peak AdamW learning rate (warm-up, then cosine decay).")
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1, description="Share of the steps warming the rate up.")
    width_chunks: int = Field(default=4, ge=1, description="Width-sorted chunks per batch (see edgeocr train).")
    kl_weight: float = Field(default=0.0, ge=0, description="Weight of the frame KL to the teacher; 0: plain CTC.")
    temperature: float = Field(default=2.0, gt=0, description="Softmax temperature of the distillation term.")
    val_lines: int = Field(default=500, ge=0, description="Held-out synthetic lines scored at the end; 0: none.")
    workers: int = Field(default=1, ge=0, description="DataLoader processes rendering the lines; 0: in this one.")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        default="auto", description="Lightning accelerator: a CUDA GPU when there is one, else the CPU."
    )
    progress: bool = Field(default=False, description="Show Lightning's progress bar and messages.")


@dataclass(frozen=True)
class TrainingOutcome:
    """What a short run did: steps, wall time, the loss history and the held-out score of the final weights."""

    steps: int
    wall_time_s: float
    losses: list[dict[str, float]]
    held_out: dict[str, float | int | None]


class _LossRecorder(Callback):
    """Keeps every step's loss (and its CTC and KL parts when distilling)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        row = {"step": float(trainer.global_step), "loss": float(loss)}
        for key in (TRAIN_CTC, TRAIN_KL):
            if key in trainer.callback_metrics:
                row[key.removeprefix("train_")] = float(trainer.callback_metrics[key])
        self.rows.append(row)


def loss_curve(rows: list[dict[str, float]], points: int = LOSS_CURVE_POINTS) -> list[dict[str, float]]:
    """Means of the per-step losses over ``points`` consecutive windows, each labelled with its last step."""
    if not rows:
        return []
    size = max(1, -(-len(rows) // points))
    curve = []
    for start in range(0, len(rows), size):
        window = rows[start : start + size]
        keys = [k for k in window[0] if k != "step"]
        curve.append(
            {
                "step": int(window[-1]["step"]),
                **{k: round(sum(r[k] for r in window if k in r) / len(window), 5) for k in keys},
            }
        )
    return curve


def held_out_lines(cfg: RecognizerConfig, settings: ShortTrainingSettings) -> InMemorySamples | None:
    """The fixed held-out synthetic set of ``settings`` (never part of the training stream), or None."""
    if not settings.val_lines:
        return None
    return render_synthetic(settings.val_lines, settings.seed + HELD_OUT_SEED_OFFSET, cfg.charset)


def _module(
    network: nn.Module, cfg: RecognizerConfig, settings: ShortTrainingSettings, teacher: FrozenTeacher | None
) -> RecognizerModule:
    module = RecognizerModule(
        cfg.model_dump(mode="json"),
        lr=settings.lr,
        warmup_fraction=settings.warmup_fraction,
        width_chunks=settings.width_chunks,
        kl_weight=settings.kl_weight,
        temperature=settings.temperature,
        teacher=teacher,
    )
    module.model = network  # the network to train (maybe pruned), instead of a fresh one of cfg.arch
    return module


def _trainer(settings: ShortTrainingSettings, callbacks: list[Callback]) -> L.Trainer:
    return L.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        precision=resolve_precision("auto", settings.accelerator),
        max_epochs=1,
        max_steps=max(settings.steps, 1),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=settings.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


class _Quiet:
    """Lightning's info messages and its data-loader advice hidden unless progress is asked for; OpenCV on
    one thread while DataLoader workers exist (its thread pool deadlocks in forked children)."""

    def __init__(self, settings: ShortTrainingSettings) -> None:
        self.settings = settings
        self.logger = logging.getLogger("lightning.pytorch")
        self.warnings = warnings.catch_warnings()

    def __enter__(self) -> None:
        self.level, self.opencv_threads = self.logger.level, cv2.getNumThreads()
        self.warnings.__enter__()
        if not self.settings.progress:
            self.logger.setLevel(logging.WARNING)
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*number of training batches.*smaller than the logging.*")
            warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
        if self.settings.workers:
            cv2.setNumThreads(1)

    def __exit__(self, *exc: object) -> None:
        cv2.setNumThreads(self.opencv_threads)
        self.logger.setLevel(self.level)
        self.warnings.__exit__(*exc)


def _validate(
    trainer: L.Trainer, module: RecognizerModule, val_set: Dataset | None, cfg: RecognizerConfig, batch_size: int
) -> dict[str, float | int | None]:
    if val_set is None:
        return {"lines": 0, "char_accuracy": None, "exact_match": None, "ctc_loss": None}
    # Held-out lines too long for their width stay in: they count as misreads, as in edgeocr train.
    loader = DataLoader(
        val_set, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=LineCollator(cfg, drop_too_long=False)
    )
    results = trainer.validate(module, dataloaders=loader, verbose=False)[0]
    return {
        "lines": len(val_set),
        "char_accuracy": round(float(results[VAL_CHAR_ACC]), 6),  # type: ignore[arg-type]
        "exact_match": round(float(results[VAL_EXACT]), 6),
        "ctc_loss": round(float(results[VAL_LOSS]), 6),
    }


def score_network(
    network: nn.Module, cfg: RecognizerConfig, settings: ShortTrainingSettings, val_set: Dataset | None
) -> dict[str, float | int | None]:
    """Greedy-decoding character accuracy, exact match and CTC loss of ``network`` on ``val_set``."""
    with _Quiet(settings):
        return _validate(
            _trainer(settings, []), _module(network, cfg, settings, None), val_set, cfg, settings.batch_size
        )


def train_network(
    network: nn.Module,
    cfg: RecognizerConfig,
    settings: ShortTrainingSettings,
    teacher: FrozenTeacher | None = None,
    val_set: Dataset | None = None,
) -> TrainingOutcome:
    """Train ``network`` in place for ``settings.steps`` steps (with ``teacher`` when ``kl_weight > 0``),
    then score it on ``val_set`` (default: :func:`held_out_lines`)."""
    if val_set is None:
        val_set = held_out_lines(cfg, settings)
    recorder = _LossRecorder()
    module = _module(network, cfg, settings, teacher if settings.kl_weight > 0 else None)
    with _Quiet(settings):
        trainer = _trainer(settings, [recorder])
        start = time.perf_counter()
        if settings.steps:
            train_set = SyntheticLines(settings.steps * settings.batch_size, settings.seed, cfg.charset)
            loader = DataLoader(
                train_set,
                batch_size=settings.batch_size,
                shuffle=False,
                num_workers=settings.workers,
                collate_fn=LineCollator(cfg),
            )
            L.seed_everything(settings.seed, workers=False, verbose=False)  # same dropout draws in every run
            module.train()  # a loaded network comes in eval mode, and Lightning keeps the mode it finds
            trainer.fit(module, train_dataloaders=loader)
        wall_time = time.perf_counter() - start
        held_out = _validate(trainer, module, val_set, cfg, settings.batch_size)
    network.eval()
    return TrainingOutcome(
        steps=trainer.global_step, wall_time_s=round(wall_time, 3), losses=loss_curve(recorder.rows), held_out=held_out
    )
