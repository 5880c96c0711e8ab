"""What every training run does the same way, whatever it trains (recogniser or detector).

An output directory holds::

    train_config.json       the configuration of the latest invocation
    checkpoints/last.ckpt   written every N steps and at each epoch end; resuming continues from it
    checkpoints/best.ckpt   the best validation score so far
    logs/                   CSV logs (losses, learning rate, validation metrics), one version per invocation
    model.onnx, model.json  the best model, exported for the torch-free runtime
    model.pt                its weights (float16) and configuration, to fine-tune from
    metrics.json            that model's validation metrics, steps, wall time, device, skipped samples

:class:`TrainingRun` holds the Lightning pieces of one invocation (checkpoints, early stopping,
callbacks, the trainer, fitting with resume, final validation and the shared metrics); a trainer
subclasses it with its datasets, module and export. :func:`execute` runs one, and
:func:`check_run_state` refuses what must not be resumed or overwritten.

Checkpoints are written atomically (Lightning writes to a temporary file, then renames), so a
run killed at any moment, even with SIGKILL, leaves a usable ``last.ckpt``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError, Interrupted
from edgeocr.data.datasets import set_epoch
from edgeocr.train.final_weights import ValidationSteps, exported_weights_metrics, finite_or_none
from edgeocr.train.module import TRAIN_LOSS
from edgeocr.train.settings import RunSettings
from edgeocr.train.validation_set import ValidationSetGuard, fingerprint

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT_NAME = "best"
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.onnx"
# A held-out synthetic validation set uses the training seed plus this, so it never overlaps the
# training stream of the same run.
HELD_OUT_SEED_OFFSET = 1_000_003
MAX_REASONS_REPORTED = 200


def resolve_precision(requested: str, accelerator: str) -> str:
    """Lightning's precision string for ``requested`` on ``accelerator`` (see RunSettings.precision)."""
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if requested == "auto":
        if on_cuda:
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    if requested == "16-mixed" and not on_cuda:
        raise EdgeOCRError("precision 16-mixed needs a CUDA GPU; use bf16-mixed or 32 on this device")
    return "32-true" if requested == "32" else requested


def check_run_state(
    cfg: RunSettings, resume: bool, model_fields: Sequence[str], words: tuple[str, str] = ("--resume", "--out")
) -> None:
    """Refuse to resume nothing, to start over an existing run, or to resume another network.

    ``model_fields`` fix the network: a run cannot resume with other values. ``words``: how the
    caller's user names the resume switch and the output directory, for the messages."""
    resume_word, out_word = words
    last = Path(cfg.out) / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume and not last.is_file():
        raise EdgeOCRError(f"cannot resume: no checkpoint at {last}; start the run without {resume_word}")
    if not resume and last.exists():
        raise EdgeOCRError(
            f"{cfg.out} already holds a training run ({last}); pass {resume_word} to continue it or choose another "
            f"{out_word}"
        )
    saved_path = Path(cfg.out) / CONFIG_FILE
    if not resume or not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rank_zero_warn(f"cannot read {saved_path}; resuming without comparing configurations")
        return
    current = cfg.model_dump(mode="json")
    different = [name for name in model_fields if saved.get(name) != current[name]]
    if different:
        raise EdgeOCRError(
            f"cannot resume {last}: it was trained with other {', '.join(different)} ({saved_path}); "
            f"use the same values or another {out_word}"
        )
    changed = sorted(n for n, v in current.items() if n in saved and saved[n] != v and n != "resume")
    if changed:
        rank_zero_warn(f"resuming with changed settings: {', '.join(changed)}")


class EpochSetter(Callback):
    """Tells the training dataset the epoch before each epoch's DataLoader iterator is made."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_epoch(self.dataset, trainer.current_epoch)


def progress_bar() -> Callback:
    if sys.stdout.isatty():
        try:
            return RichProgressBar()
        except ModuleNotFoundError:  # rich comes with typer, but the bar must never be fatal
            pass
    return TQDMProgressBar()


def device_description(trainer: L.Trainer) -> dict[str, Any]:
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"type": device.type, "name": name, "devices": trainer.num_devices, "nodes": trainer.num_nodes}


def read_checkpoint_position(path: Path) -> tuple[int, int]:
    """(epoch, global step) stored in a Lightning checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a damaged file
        raise EdgeOCRError(f"cannot read checkpoint {path}: {exc}") from exc
    return int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0))


class TrainingRun:
    """The Lightning pieces of one invocation. A subclass sets ``train_set``, ``val_set``,
    ``train_loader``, ``val_loader`` and ``module``, then calls :meth:`_set_up` with the metric
    that picks the best checkpoint; it implements :meth:`export` and :meth:`run_metrics`."""

    cfg: RunSettings
    train_set: Dataset
    val_set: Dataset
    train_loader: DataLoader
    val_loader: DataLoader
    module: L.LightningModule
    resume_word = "--resume"

    def __init__(self, cfg: RunSettings) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.last = self.out / CHECKPOINT_DIR / LAST_CHECKPOINT
        self.precision = resolve_precision(cfg.precision, cfg.accelerator)
        self.pin_memory = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")

    def _set_up(self, monitor: str) -> None:
        cfg = self.cfg
        self.best_checkpoint = ModelCheckpoint(
            dirpath=self.last.parent,
            filename=BEST_CHECKPOINT_NAME,
            monitor=monitor,
            mode="max",
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
            save_on_train_epoch_end=False,
        )
        # Both act when validation ends, where the metric exists: a run resumed from an epoch-end
        # checkpoint replays on_train_epoch_end before any validation has run.
        self.early_stopping = (
            EarlyStopping(
                monitor=monitor, mode="max", patience=cfg.early_stopping_patience, check_on_train_epoch_end=False
            )
            if cfg.early_stopping_patience is not None
            else None
        )
        self.validation_steps = ValidationSteps()
        self.validation_set_guard = ValidationSetGuard(
            fingerprint(self.val_set), self.best_checkpoint, self.early_stopping
        )
        self.trainer = self._trainer()

    def _callbacks(self) -> list[Callback]:
        # best_checkpoint writes best.ckpt and last.ckpt after each validation (each epoch end);
        # the step callback writes only last.ckpt, every N steps.
        callbacks: list[Callback] = [
            self.best_checkpoint,
            self.validation_steps,
            self.validation_set_guard,
            EpochSetter(self.train_set),
            LearningRateMonitor("step"),
        ]
        if self.cfg.checkpoint_every_n_steps:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=self.last.parent,
                    every_n_train_steps=self.cfg.checkpoint_every_n_steps,
                    save_top_k=0,
                    save_last=True,
                    enable_version_counter=False,
                )
            )
        if self.early_stopping is not None:
            callbacks.append(self.early_stopping)
        if self.cfg.progress_bar:
            callbacks.append(progress_bar())
        return callbacks

    def _trainer(self) -> L.Trainer:
        cfg = self.cfg
        num_nodes = getattr(cfg, "num_nodes", 1)
        processes = (cfg.devices if isinstance(cfg.devices, int) else 1) * num_nodes
        steps_per_epoch = max(1, len(self.train_set) // (cfg.batch_size * processes))  # type: ignore[arg-type]
        return L.Trainer(
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            num_nodes=num_nodes,
            precision=self.precision,
            max_epochs=cfg.epochs,
            max_steps=cfg.max_steps or -1,
            limit_val_batches=cfg.limit_val_batches,
            callbacks=self._callbacks(),
            logger=CSVLogger(self.out, name="logs"),
            default_root_dir=self.out,
            log_every_n_steps=min(50, steps_per_epoch),
            enable_progress_bar=cfg.progress_bar,
            enable_model_summary=cfg.progress_bar,
        )

    def fit(self, resume: bool) -> int | None:
        """Train (from the last checkpoint when ``resume``); return the step resumed from."""
        resumed_from_step, epoch = None, 0
        if resume:
            epoch, resumed_from_step = read_checkpoint_position(self.last)
            rank_zero_info(f"resuming from {self.last} at epoch {epoch}, step {resumed_from_step}")
        set_epoch(self.train_set, epoch)  # the first iterator is made before any epoch hook runs
        try:
            self.trainer.fit(
                self.module,
                train_dataloaders=self.train_loader,
                val_dataloaders=self.val_loader,
                ckpt_path=str(self.last) if resume else None,
            )
        except SystemExit as exc:  # Lightning exits after a graceful Ctrl-C shutdown
            raise Interrupted(
                f"training stopped at step {self.trainer.global_step}; continue it with "
                f"{self.resume_word} (from {self.last})"
            ) from exc
        return resumed_from_step

    def best_path(self) -> Path | None:
        path = self.best_checkpoint.best_model_path
        return Path(path) if path and Path(path).is_file() else None

    def final_validation(self) -> dict[str, float | None]:
        """Validation metrics of the model that is exported: the best checkpoint (when export is 'best'
        and one exists), else the final weights. Leaves those weights in the module."""
        best = self.best_path() if self.cfg.export == "best" else None
        results = self.trainer.validate(
            self.module, dataloaders=self.val_loader, ckpt_path=str(best) if best else None, verbose=False
        )
        return {key: finite_or_none(value) for key, value in (results[0] if results else {}).items()}

    def export(self) -> Path:
        """``model.onnx`` with its sidecar, and ``model.pt`` (weights to fine-tune from)."""
        raise NotImplementedError

    def run_metrics(self, final: dict[str, float | None]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """What this kind of run reports besides the common figures: (validation figures of the
        exported weights, its own details such as data sizes, every distinct reason a sample was
        skipped)."""
        raise NotImplementedError

    def metrics(
        self, final: dict[str, float | None], train_loss: float | None, resumed_from_step: int | None, wall_time: float
    ) -> dict[str, Any]:
        trainer = self.trainer
        validation, details, reasons = self.run_metrics(final)
        best = self.best_path()
        return {
            **validation,
            "train_loss": train_loss,
            "best_checkpoint": str(best) if best else None,
            "exported": self.cfg.export if (best or self.cfg.export == "last") else "last",
            "steps": trainer.global_step,
            "epoch": trainer.current_epoch,
            "stopped_early": bool(self.early_stopping is not None and self.early_stopping.stopped_epoch > 0),
            "resumed_from_step": resumed_from_step,
            "wall_time_s": round(wall_time, 3),
            "device": device_description(trainer),
            "precision": self.precision,
            **details,
            "skipped_samples": len(reasons),
            "skipped_reasons": reasons[:MAX_REASONS_REPORTED],
            "model": MODEL_FILE,
        }


def execute(cfg: RunSettings, make_run: Callable[[], TrainingRun], resume: bool) -> Path:
    """Build the run, train, export the chosen weights, write ``metrics.json``; return ``out/model.onnx``.

    While it runs, OpenCV is limited to one thread in this process (restored at the end) when
    DataLoader workers are used: they are forked from it, and OpenCV's thread pool cannot be
    reconfigured in a forked child without deadlocking, so the workers must inherit the setting.
    """
    L.seed_everything(cfg.seed, workers=False, verbose=False)  # data depends on seeds and indices only
    opencv_threads = cv2.getNumThreads()
    try:
        run = make_run()
        if cfg.workers:
            cv2.setNumThreads(1)
        if run.trainer.is_global_zero:
            atomic_write_bytes(run.out / CONFIG_FILE, cfg.to_json().encode("utf-8"))
        start = time.perf_counter()
        resumed_from_step = run.fit(resume)
        loss = run.trainer.callback_metrics.get(f"{TRAIN_LOSS}_epoch", run.trainer.callback_metrics.get(TRAIN_LOSS))
        final, final_check = exported_weights_metrics(run)
        wall_time = time.perf_counter() - start
        if run.trainer.is_global_zero:
            run.export()
            metrics = run.metrics(
                final, finite_or_none(loss) if loss is not None else None, resumed_from_step, wall_time
            )
            metrics["final_weights_validation"] = final_check
            atomic_write_bytes(
                run.out / METRICS_FILE, (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            )
            if metrics["skipped_samples"]:
                rank_zero_warn(
                    f"skipped {metrics['skipped_samples']} unusable samples; "
                    f"the reasons are in {run.out / METRICS_FILE}"
                )
        return run.out / MODEL_FILE
    finally:
        cv2.setNumThreads(opencv_threads)
