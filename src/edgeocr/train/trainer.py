"""One training run: :class:`TrainConfig` says what to train on and how, :func:`run_training` runs it.

Lightning provides devices, mixed precision, DDP over several GPUs and nodes, checkpoints and
early stopping. The output directory holds::

    train_config.json       the configuration of the latest invocation
    checkpoints/last.ckpt   written every N steps and at each epoch end; --resume continues from it
    checkpoints/best.ckpt   the best val_char_acc so far
    logs/                   CSV logs (losses, learning rate, validation metrics), one version per invocation
    model.onnx, model.json  the best model, exported for the torch-free runtime
    model.pt                its weights (float16) and configuration, to fine-tune from
    metrics.json            that model's validation metrics, steps, wall time, device, skipped samples

Checkpoints are written atomically (Lightning writes to a temporary file, then renames), so a
run killed at any moment, even with SIGKILL, leaves a usable ``last.ckpt``.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from collections.abc import Sequence
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
from pydantic import Field, field_validator, model_validator
from torch.utils.data import DataLoader, Dataset

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.charset import DEFAULT_CHARSET
from edgeocr.core.errors import EdgeOCRError, Interrupted
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.datasets import (
    InMemoryLines,
    LineCollator,
    Mixed,
    SyntheticLines,
    open_dataset,
    render_synthetic,
    set_epoch,
)
from edgeocr.models.export import export_onnx
from edgeocr.models.factory import available_architectures, default_config
from edgeocr.models.weights import load_weights, save_weights, weights_path
from edgeocr.train.settings import RunSettings
from edgeocr.train.final_weights import ValidationSteps, exported_weights_metrics, finite_or_none
from edgeocr.train.module import TRAIN_LOSS, VAL_CHAR_ACC, VAL_EXACT, VAL_LOSS, RecognizerModule


CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT_NAME = "best"
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.onnx"
# The held-out synthetic validation set uses the training seed plus this, so it never overlaps
# the training stream of the same run.
HELD_OUT_SEED_OFFSET = 1_000_003
MAX_REASONS_REPORTED = 200
# Fields that fix the network's shape: a run cannot resume with other values.
MODEL_FIELDS = ("arch", "input_height", "max_width", "charset")


class TrainConfig(RunSettings):
    """Everything a training run needs; saved as ``train_config.json`` in the output directory."""

    arch: str = Field(default="crnn_m", description="Architecture from edgeocr.models.factory, e.g. crnn_m, svtr_s.")
    input_height: int = Field(default=32, description="Line height in pixels the network reads (multiple of 16).")
    max_width: int = Field(default=512, description="Widest input line in pixels; wider lines are squashed.")
    charset: str = Field(default=DEFAULT_CHARSET, description="Characters the model reads; class 0 is the CTC blank.")
    data: tuple[Path, ...] = Field(
        default=(), description="Training datasets: folders with labels.tsv, or LMDB directories (data.mdb)."
    )
    val: Path | None = Field(
        default=None,
        description="Validation dataset (folder or LMDB). None: a fixed held-out synthetic set of val_synthetic "
        "samples, seeded synthetic_seed + 1000003, rendered once and kept in memory.",
    )
    synthetic_per_epoch: int = Field(
        default=0, ge=0, description="Synthetic lines rendered on the fly per epoch (new ones each epoch); 0: none."
    )
    synthetic_ratio: float | None = Field(
        default=None, gt=0, lt=1,
        description="With both datasets and synthetic data: share of synthetic samples in each epoch. None: in "
        "proportion to the sizes (synthetic_per_epoch against the datasets' sample counts).",
    )
    val_synthetic: int = Field(default=2000, ge=1, description="Size of the held-out synthetic set (no --val).")
    width_chunks: int = Field(
        default=4, ge=1,
        description="Training batches are sorted by line width and run in this many chunks, each padded only to "
        "its own widest line (same loss, less compute on padding); 1: one padded batch.",
    )
    num_nodes: int = Field(default=1, ge=1, description="Machines for multi-node DDP.")
    init: Path | None = Field(
        default=None,
        description="Start from these weights (a model.pt written beside an exported model, or a training "
        "checkpoint) instead of a random initialisation; architecture, charset and input size must match.",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in available_architectures():
            raise ValueError(f"unknown architecture {value!r}; choose one of {', '.join(available_architectures())}")
        return value

    @model_validator(mode="after")
    def _has_training_data(self) -> TrainConfig:
        if not self.data and self.synthetic_per_epoch == 0:
            raise ValueError("nothing to train on: give datasets (data) or synthetic_per_epoch > 0")
        if self.synthetic_ratio is not None and not (self.data and self.synthetic_per_epoch):
            raise ValueError("synthetic_ratio mixes datasets with synthetic data: it needs both")
        return self

    def recognizer_config(self) -> RecognizerConfig:
        """The configuration of the network this run trains and exports."""
        return default_config(self.arch, self.charset, input_height=self.input_height, max_width=self.max_width)



# --- helpers ----------------------------------------------------------------------------------


def resolve_precision(requested: str, accelerator: str) -> str:
    """Lightning's precision string for ``requested`` on ``accelerator`` (see TrainConfig.precision)."""
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if requested == "auto":
        if on_cuda:
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    if requested == "16-mixed" and not on_cuda:
        raise EdgeOCRError("precision 16-mixed needs a CUDA GPU; use bf16-mixed or 32 on this device")
    return "32-true" if requested == "32" else requested


def _check_run_state(cfg: TrainConfig, last: Path, resume: bool) -> None:
    """Refuse to resume nothing, to start over an existing run, or to resume another network."""
    if resume and not last.is_file():
        raise EdgeOCRError(f"cannot resume: no checkpoint at {last}; start the run without --resume")
    if not resume and last.exists():
        raise EdgeOCRError(
            f"{cfg.out} already holds a training run ({last}); pass --resume to continue it or choose another --out"
        )
    saved_path = cfg.out / CONFIG_FILE
    if not resume or not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rank_zero_warn(f"cannot read {saved_path}; resuming without comparing configurations")
        return
    current = cfg.model_dump(mode="json")
    different = [name for name in MODEL_FIELDS if saved.get(name) != current[name]]
    if different:
        raise EdgeOCRError(
            f"cannot resume {last}: it was trained with other {', '.join(different)} ({saved_path}); "
            "use the same values or another --out"
        )
    changed = sorted(name for name, value in current.items() if name in saved and saved[name] != value)
    if changed:
        rank_zero_warn(f"resuming with changed settings: {', '.join(changed)}")


def _build_train_set(cfg: TrainConfig) -> Dataset:
    parts: list[Dataset] = [open_dataset(path, cfg.charset) for path in cfg.data]
    sizes = [len(part) for part in parts]  # type: ignore[arg-type]
    if cfg.synthetic_per_epoch:
        parts.append(SyntheticLines(cfg.synthetic_per_epoch, cfg.synthetic_seed, cfg.charset,
                                    [str(t) for t in cfg.templates], [str(f) for f in cfg.fonts]))
        sizes.append(cfg.synthetic_per_epoch)
    if len(parts) == 1:
        return parts[0]
    if cfg.synthetic_ratio is None:
        ratios = [float(size) for size in sizes]
    else:
        real = sum(sizes[:-1])
        ratios = [(1.0 - cfg.synthetic_ratio) * size / real for size in sizes[:-1]] + [cfg.synthetic_ratio]
    return Mixed(parts, ratios, length=sum(sizes), seed=cfg.synthetic_seed)


def _build_val_set(cfg: TrainConfig) -> Dataset:
    if cfg.val is not None:
        return open_dataset(cfg.val, cfg.charset)
    seed = cfg.synthetic_seed + HELD_OUT_SEED_OFFSET
    rank_zero_info(f"rendering the held-out synthetic validation set ({cfg.val_synthetic} lines, seed {seed})")
    return render_synthetic(cfg.val_synthetic, seed, cfg.charset, [str(t) for t in cfg.templates],
                            [str(f) for f in cfg.fonts])


def _loader(dataset: Dataset, collate: LineCollator, cfg: TrainConfig, shuffle: bool, pin: bool) -> DataLoader:
    # In-memory sets are cheap to collate in the main process; workers only cost forks there.
    workers = 0 if isinstance(dataset, InMemoryLines) else cfg.workers
    return DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
        pin_memory=pin,
        # Not persistent: each epoch's workers must fork a dataset that knows the new epoch.
        persistent_workers=False,
    )


class _EpochSetter(Callback):
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


def _skipped_reasons(datasets: Sequence[Dataset], module: RecognizerModule) -> list[str]:
    """Distinct reasons, in order: problems found when opening datasets, then while batching."""
    reasons = [reason for d in datasets for reason in getattr(d, "skipped", [])]
    return list(dict.fromkeys([*reasons, *module.skipped]))


def read_checkpoint_position(path: Path) -> tuple[int, int]:
    """(epoch, global step) stored in a Lightning checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a damaged file
        raise EdgeOCRError(f"cannot read checkpoint {path}: {exc}") from exc
    return int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0))


# --- the run ---------------------------------------------------------------------------------


class _Run:
    """The pieces of one invocation, built from a TrainConfig (see :func:`run_training`)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.last = self.out / CHECKPOINT_DIR / LAST_CHECKPOINT
        self.precision = resolve_precision(cfg.precision, cfg.accelerator)
        self.recognizer_cfg = cfg.recognizer_config()
        self.train_set = _build_train_set(cfg)
        self.val_set = _build_val_set(cfg)
        pin = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
        self.train_loader = _loader(self.train_set, LineCollator(self.recognizer_cfg), cfg, shuffle=True, pin=pin)
        # Validation keeps lines too long for their width: they count as misreads, not as skipped.
        self.val_loader = _loader(self.val_set, LineCollator(self.recognizer_cfg, drop_too_long=False), cfg,
                                  shuffle=False, pin=pin)
        self.module = RecognizerModule(self.recognizer_cfg.model_dump(mode="json"), lr=cfg.lr,
                                       weight_decay=cfg.weight_decay, warmup_fraction=cfg.warmup_fraction,
                                       width_chunks=cfg.width_chunks)
        if cfg.init is not None:
            self._load_init(cfg.init)
        self.best_checkpoint = ModelCheckpoint(
            dirpath=self.last.parent, filename=BEST_CHECKPOINT_NAME, monitor=VAL_CHAR_ACC, mode="max",
            save_top_k=1, save_last=True, auto_insert_metric_name=False, enable_version_counter=False,
            save_on_train_epoch_end=False,
        )
        # Both act when validation ends, where val_char_acc exists: a run resumed from an epoch-end
        # checkpoint replays on_train_epoch_end before any validation has run.
        self.early_stopping = (
            EarlyStopping(monitor=VAL_CHAR_ACC, mode="max", patience=cfg.early_stopping_patience,
                          check_on_train_epoch_end=False)
            if cfg.early_stopping_patience is not None else None
        )
        self.validation_steps = ValidationSteps()
        self.trainer = self._trainer()

    def _load_init(self, path: Path) -> None:
        init_cfg, state = load_weights(path)
        ours = self.recognizer_cfg
        different = [name for name in ("arch", "input_height", "max_width") if getattr(init_cfg, name) != getattr(ours, name)]
        if init_cfg.charset != ours.charset:
            different.append("charset")
        if different:
            raise EdgeOCRError(f"cannot start from {path}: its {', '.join(different)} differ from this run's "
                               f"({', '.join(f'{n}={getattr(init_cfg, n)!r}' for n in different)})")
        try:
            self.module.model.load_state_dict(state)
        except RuntimeError as exc:
            raise EdgeOCRError(f"cannot start from {path}: its weights do not fit {ours.arch} ({exc})") from exc

    def _callbacks(self) -> list[Callback]:
        # best_checkpoint writes best.ckpt and last.ckpt after each validation (each epoch end);
        # the step callback writes only last.ckpt, every N steps.
        callbacks: list[Callback] = [self.best_checkpoint, self.validation_steps, _EpochSetter(self.train_set),
                                     LearningRateMonitor("step")]
        if self.cfg.checkpoint_every_n_steps:
            callbacks.append(ModelCheckpoint(
                dirpath=self.last.parent, every_n_train_steps=self.cfg.checkpoint_every_n_steps, save_top_k=0,
                save_last=True, enable_version_counter=False,
            ))
        if self.early_stopping is not None:
            callbacks.append(self.early_stopping)
        if self.cfg.progress_bar:
            callbacks.append(progress_bar())
        return callbacks

    def _trainer(self) -> L.Trainer:
        cfg = self.cfg
        processes = (cfg.devices if isinstance(cfg.devices, int) else 1) * cfg.num_nodes
        steps_per_epoch = max(1, len(self.train_set) // (cfg.batch_size * processes))  # type: ignore[arg-type]
        return L.Trainer(
            accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, precision=self.precision,
            max_epochs=cfg.epochs, max_steps=cfg.max_steps or -1, limit_val_batches=cfg.limit_val_batches,
            callbacks=self._callbacks(), logger=CSVLogger(self.out, name="logs"), default_root_dir=self.out,
            log_every_n_steps=min(50, steps_per_epoch), enable_progress_bar=cfg.progress_bar,
            enable_model_summary=cfg.progress_bar,
        )

    def fit(self, resume: bool) -> int | None:
        """Train (from the last checkpoint when ``resume``); return the step resumed from."""
        resumed_from_step = None
        epoch = 0
        if resume:
            epoch, resumed_from_step = read_checkpoint_position(self.last)
            rank_zero_info(f"resuming from {self.last} at epoch {epoch}, step {resumed_from_step}")
        # The first DataLoader iterator is made before any epoch hook runs: set its epoch now.
        set_epoch(self.train_set, epoch)
        try:
            self.trainer.fit(self.module, train_dataloaders=self.train_loader, val_dataloaders=self.val_loader,
                             ckpt_path=str(self.last) if resume else None)
        except SystemExit as exc:  # Lightning exits after a graceful Ctrl-C shutdown
            raise Interrupted(f"training stopped at step {self.trainer.global_step}; continue it with --resume "
                              f"(from {self.last})") from exc
        return resumed_from_step

    def best_path(self) -> Path | None:
        path = self.best_checkpoint.best_model_path
        return Path(path) if path and Path(path).is_file() else None

    def final_validation(self) -> dict[str, float | None]:
        """Validation metrics of the model that is exported: the best checkpoint (when export is 'best'
        and one exists), else the final weights. Leaves those weights in the module."""
        best = self.best_path() if self.cfg.export == "best" else None
        results = self.trainer.validate(self.module, dataloaders=self.val_loader,
                                        ckpt_path=str(best) if best else None, verbose=False)
        return {key: finite_or_none(value) for key, value in (results[0] if results else {}).items()}

    def export(self) -> Path:
        """``model.onnx`` with its sidecar, and ``model.pt`` (weights to fine-tune from)."""
        network = copy.deepcopy(self.module.model).cpu().float()
        path = export_onnx(network, self.recognizer_cfg, self.out / MODEL_FILE)
        save_weights(network, self.recognizer_cfg, weights_path(path))
        return path

    def metrics(self, final: dict[str, float | None], train_loss: float | None, resumed_from_step: int | None,
                wall_time: float) -> dict[str, Any]:
        trainer = self.trainer
        reasons = _skipped_reasons([self.train_set, self.val_set], self.module)
        best = self.best_path()
        return {
            VAL_CHAR_ACC: final.get(VAL_CHAR_ACC),
            VAL_EXACT: final.get(VAL_EXACT),
            VAL_LOSS: final.get(VAL_LOSS),
            "train_loss": train_loss,
            "best_checkpoint": str(best) if best else None,
            "exported": self.cfg.export if (best or self.cfg.export == "last") else "last",
            "init": str(self.cfg.init) if self.cfg.init else None,
            "steps": trainer.global_step,
            "epoch": trainer.current_epoch,
            "stopped_early": bool(self.early_stopping is not None and self.early_stopping.stopped_epoch > 0),
            "resumed_from_step": resumed_from_step,
            "wall_time_s": round(wall_time, 3),
            "device": device_description(trainer),
            "precision": self.precision,
            "train_samples_per_epoch": len(self.train_set),  # type: ignore[arg-type]
            "val_samples": len(self.val_set),  # type: ignore[arg-type]
            "skipped_samples": len(reasons),
            "skipped_reasons": reasons[:MAX_REASONS_REPORTED],
            "model": MODEL_FILE,
        }


def run_training(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train, keep checkpoints, export the best model; return the path of ``out/model.onnx``.

    ``resume`` continues from ``out/checkpoints/last.ckpt`` (weights, optimizer, scheduler,
    epoch and step, early-stopping and best-checkpoint state); without it, an output directory
    that already holds a run is refused. ``metrics.json`` reports the exported model's
    validation metrics, the step count, the wall time of this invocation, the device and the
    samples skipped as unusable (with their reasons).

    While it runs, OpenCV is limited to one thread in this process (restored at the end):
    DataLoader workers are forked from it, and OpenCV's thread pool cannot be reconfigured in
    a forked child without deadlocking, so the workers must inherit the setting.
    """
    _check_run_state(cfg, Path(cfg.out) / CHECKPOINT_DIR / LAST_CHECKPOINT, resume)
    L.seed_everything(cfg.seed, workers=False, verbose=False)  # data depends on seeds and indices only
    opencv_threads = cv2.getNumThreads()
    try:
        run = _Run(cfg)
        if cfg.workers:
            cv2.setNumThreads(1)
        if run.trainer.is_global_zero:
            atomic_write_bytes(run.out / CONFIG_FILE, cfg.to_json().encode("utf-8"))
        start = time.perf_counter()
        resumed_from_step = run.fit(resume)
        loss = run.trainer.callback_metrics.get(f"{TRAIN_LOSS}_epoch", run.trainer.callback_metrics.get(TRAIN_LOSS))
        final, final_check = exported_weights_metrics(run)
        wall_time = time.perf_counter() - start
        model_path = run.out / MODEL_FILE
        if run.trainer.is_global_zero:
            run.export()
            metrics = run.metrics(final, finite_or_none(loss) if loss is not None else None, resumed_from_step, wall_time)
            metrics["final_weights_validation"] = final_check
            atomic_write_bytes(run.out / METRICS_FILE,
                               (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
            if metrics["skipped_samples"]:
                rank_zero_warn(f"skipped {metrics['skipped_samples']} unusable samples; "
                               f"the reasons are in {run.out / METRICS_FILE}")
        return model_path
    finally:
        cv2.setNumThreads(opencv_threads)
