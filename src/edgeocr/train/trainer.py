"""One recogniser training run: :class:`TrainConfig` says what to train on and how, :func:`run_training` runs it.

Lightning provides devices, mixed precision, DDP over several GPUs and nodes, checkpoints and
early stopping; :mod:`edgeocr.train.run` has what every run shares (the output directory's
layout, checkpoints, resume, the final validation and ``metrics.json``). ``checkpoints/best.ckpt``
keeps the best ``val_char_acc``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info
from pydantic import Field, field_validator, model_validator
from torch.utils.data import DataLoader, Dataset

from edgeocr.core.charset import DEFAULT_CHARSET
from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.datasets import (
    InMemorySamples,
    LineCollator,
    Mixed,
    SyntheticLines,
    open_dataset,
    render_synthetic,
    require_usable,
)
from edgeocr.models.export import export_onnx
from edgeocr.models.factory import available_architectures, build_from_config, default_config, is_imported
from edgeocr.models.pretrained import load_init
from edgeocr.models.weights import save_weights, weights_path
from edgeocr.train.module import VAL_CHAR_ACC, VAL_EXACT, VAL_LOSS, FrozenTeacher, RecognizerModule
from edgeocr.train.report_eval import REPORT_FILE, ReportEvaluation
from edgeocr.train.run import (
    HELD_OUT_SEED_OFFSET,
    MODEL_FILE,
    TrainingRun,
    check_run_state,
    execute,
)
from edgeocr.train.settings import RunSettings

__all__ = ["MODEL_FILE", "TrainConfig", "run_training"]

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
        default=None,
        gt=0,
        lt=1,
        description="With both datasets and synthetic data: share of synthetic samples in each epoch. None: in "
        "proportion to the sizes (synthetic_per_epoch against the datasets' sample counts).",
    )
    val_synthetic: int = Field(default=2000, ge=1, description="Size of the held-out synthetic set (no --val).")
    width_chunks: int = Field(
        default=4,
        ge=1,
        description="Training batches are sorted by line width and run in this many chunks, each padded only to "
        "its own widest line (same loss, less compute on padding); 1: one padded batch.",
    )
    num_nodes: int = Field(default=1, ge=1, description="Machines for multi-node DDP.")
    init: Path | None = Field(
        default=None,
        description="Start from these weights instead of a random initialisation: 'pretrained' (the imported "
        "architecture's source weights, e.g. PP-OCRv6 small's for ppocrv6_small), a source name ('ppocrv6'), an "
        ".onnx exported from an imported architecture, a model.pt written beside an exported model, or a "
        "training checkpoint; architecture, charset and input height must match.",
    )
    distill_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of a frame-KL term toward the frozen starting model (init) on the same batch, added to "
        "CTC: the model keeps what it read well before (real photos for a pretrained init). 0: plain CTC.",
    )
    distill_temperature: float = Field(default=2.0, gt=0, description="Softening temperature of the frame KL.")
    freeze_stages: int = Field(
        default=0,
        ge=0,
        description="Keep the first N stages of the network frozen (weights and batch-norm statistics); imported "
        "architectures have 8: stem, five backbone stages, sequence encoder, head.",
    )
    report_data: tuple[Path, ...] = Field(
        default=(),
        description="Labelled crop folders read every report_every_n_steps for the record only (report_eval.jsonl): "
        "never trained on, never used to choose a checkpoint.",
    )
    report_every_n_steps: int = Field(default=500, ge=1, description="Steps between two report_data readings.")

    @model_validator(mode="before")
    @classmethod
    def _architecture_defaults(cls, data: Any) -> Any:
        # Input height and width limit default to the architecture's own (PP-OCR reads 48 px lines).
        if isinstance(data, dict) and data.get("arch") in available_architectures():
            arch_cfg = default_config(data["arch"])
            data = {
                **data,
                **{name: getattr(arch_cfg, name) for name in ("input_height", "max_width") if data.get(name) is None},
            }
        return data

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in available_architectures():
            raise ValueError(f"unknown architecture {value!r}; choose one of {', '.join(available_architectures())}")
        return value

    @model_validator(mode="after")
    def _distillation_needs_init(self) -> TrainConfig:
        if self.distill_weight > 0 and self.init is None:
            raise ValueError("distill_weight keeps the starting model's reads: it needs init")
        return self

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


def _build_train_set(cfg: TrainConfig) -> Dataset:
    parts: list[Dataset] = [open_dataset(path, cfg.charset) for path in cfg.data]
    collate = LineCollator(cfg.recognizer_config())
    for path, part in zip(cfg.data, parts, strict=True):
        require_usable(part, str(path), collate)  # DataError (exit 2) before any training
    sizes = [len(part) for part in parts]  # type: ignore[arg-type]
    if cfg.synthetic_per_epoch:
        parts.append(
            SyntheticLines(
                cfg.synthetic_per_epoch,
                cfg.synthetic_seed,
                cfg.charset,
                [str(t) for t in cfg.templates],
                [str(f) for f in cfg.fonts],
            )
        )
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
        val_set = open_dataset(cfg.val, cfg.charset)
        require_usable(val_set, str(cfg.val), LineCollator(cfg.recognizer_config(), drop_too_long=False))
        return val_set
    seed = cfg.synthetic_seed + HELD_OUT_SEED_OFFSET
    rank_zero_info(f"rendering the held-out synthetic validation set ({cfg.val_synthetic} lines, seed {seed})")
    return render_synthetic(
        cfg.val_synthetic, seed, cfg.charset, [str(t) for t in cfg.templates], [str(f) for f in cfg.fonts]
    )


def _loader(dataset: Dataset, collate: LineCollator, cfg: TrainConfig, shuffle: bool, pin: bool) -> DataLoader:
    # In-memory sets are cheap to collate in the main process; workers only cost forks there.
    workers = 0 if isinstance(dataset, InMemorySamples) else cfg.workers
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin,
        # Not persistent: each epoch's workers must fork a dataset that knows the new epoch.
        persistent_workers=False,
    )


def _skipped_reasons(datasets: Sequence[Dataset], module: RecognizerModule) -> list[str]:
    """Distinct reasons, in order: problems found when opening datasets, then while batching."""
    reasons = [reason for d in datasets for reason in getattr(d, "skipped", [])]
    return list(dict.fromkeys([*reasons, *module.skipped]))


# --- the run ---------------------------------------------------------------------------------


class _Run(TrainingRun):
    """The pieces of one invocation, built from a TrainConfig (see :func:`run_training`)."""

    cfg: TrainConfig

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.recognizer_cfg = cfg.recognizer_config()
        self.train_set = _build_train_set(cfg)
        self.val_set = _build_val_set(cfg)
        self.train_loader = _loader(
            self.train_set, LineCollator(self.recognizer_cfg), cfg, shuffle=True, pin=self.pin_memory
        )
        # Validation keeps lines too long for their width: they count as misreads, not as skipped.
        self.val_loader = _loader(
            self.val_set,
            LineCollator(self.recognizer_cfg, drop_too_long=False),
            cfg,
            shuffle=False,
            pin=self.pin_memory,
        )
        state = load_init(cfg.init, self.recognizer_cfg) if cfg.init is not None else None
        teacher = None
        if cfg.distill_weight > 0 and state is not None:
            # The starting weights, frozen: the student keeps their frame posteriors where CTC lets it.
            teacher_network = build_from_config(self.recognizer_cfg)
            self._load_state(teacher_network, state)
            teacher = FrozenTeacher(teacher_network)
        self.module = RecognizerModule(
            self.recognizer_cfg.model_dump(mode="json"),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_fraction=cfg.warmup_fraction,
            width_chunks=cfg.width_chunks,
            kl_weight=cfg.distill_weight,
            temperature=cfg.distill_temperature,
            teacher=teacher,
            frozen_stages=cfg.freeze_stages,
        )
        if state is not None:
            self._load_state(self.module.model, state)
        self._set_up(monitor=VAL_CHAR_ACC)

    def _load_state(self, network: Any, state: dict[str, Any]) -> None:
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise EdgeOCRError(
                f"cannot start from {self.cfg.init}: its weights do not fit {self.recognizer_cfg.arch} ({exc})"
            ) from exc

    def _callbacks(self) -> list[Any]:
        callbacks = super()._callbacks()
        if self.cfg.report_data:
            callbacks.append(
                ReportEvaluation(
                    self.cfg.report_data, self.cfg.report_every_n_steps, self.out / REPORT_FILE, self.recognizer_cfg
                )
            )
        return callbacks

    def export(self) -> Path:
        """``model.onnx`` with its sidecar, and ``model.pt`` (weights to fine-tune from) unless the
        architecture is imported: its ``.onnx`` is what fine-tuning starts from."""
        network = copy.deepcopy(self.module.model).cpu().float()
        path = export_onnx(network, self.recognizer_cfg, self.out / MODEL_FILE)
        if not is_imported(self.recognizer_cfg.arch):
            save_weights(network, self.recognizer_cfg, weights_path(path))
        return path

    def run_metrics(self, final: dict[str, float | None]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        validation = {key: final.get(key) for key in (VAL_CHAR_ACC, VAL_EXACT, VAL_LOSS)}
        details = {
            "init": str(self.cfg.init) if self.cfg.init else None,
            "distill_weight": self.cfg.distill_weight,
            "freeze_stages": self.cfg.freeze_stages,
            "train_samples_per_epoch": len(self.train_set),  # type: ignore[arg-type]
            "val_samples": len(self.val_set),
        }  # type: ignore[arg-type]
        return validation, details, _skipped_reasons([self.train_set, self.val_set], self.module)


def run_training(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train, keep checkpoints, export the best model; return the path of ``out/model.onnx``.

    ``resume`` continues from ``out/checkpoints/last.ckpt`` (weights, optimizer, scheduler,
    epoch and step, early-stopping and best-checkpoint state); without it, an output directory
    that already holds a run is refused. ``metrics.json`` reports the exported model's
    validation metrics, the step count, the wall time of this invocation, the device and the
    samples skipped as unusable (with their reasons). See :func:`edgeocr.train.run.execute`.
    """
    check_run_state(cfg, resume, MODEL_FIELDS)
    return execute(cfg, lambda: _Run(cfg), resume)
