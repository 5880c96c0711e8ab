"""Settings every training run shares (recogniser and detector): schedule, devices, checkpoints, output.

:class:`RunSettings` is the common base of :class:`edgeocr.train.trainer.TrainConfig` and
:class:`edgeocr.train.detector_trainer.DetectorTrainConfig`; each adds what its model and data
need and overrides the defaults that differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Precision = Literal["auto", "32", "16-mixed", "bf16-mixed"]
AcceleratorName = Literal["auto", "cpu", "gpu", "cuda", "mps"]


class RunSettings(BaseModel):
    """Fields and checks shared by every training configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    synthetic_seed: int = Field(default=0, description="Seed of the synthetic data; same seed, same samples.")
    templates: tuple[Path, ...] = Field(default=(), description="Extra YAML code-template catalogues (synthetic).")
    fonts: tuple[Path, ...] = Field(default=(), description="Extra font directories for synthetic data.")
    epochs: int = Field(default=20, ge=1, description="Maximum number of epochs.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps in total.")
    batch_size: int = Field(default=64, ge=1, description="Samples per batch and device.")
    lr: float = Field(default=1e-3, gt=0, description="Peak learning rate of AdamW (linear warm-up, cosine decay).")
    weight_decay: float = Field(default=0.05, ge=0, description="AdamW weight decay (not on biases and norms).")
    warmup_fraction: float = Field(
        default=0.05, ge=0, lt=1, description="Share of the planned steps spent warming the learning rate up."
    )
    workers: int = Field(default=4, ge=0, description="DataLoader worker processes per device; 0: in the main process.")
    precision: Precision = Field(
        default="auto",
        description="'auto': bf16-mixed on CUDA GPUs that support it, else 16-mixed on CUDA, 32 elsewhere. "
        "'32', '16-mixed' (CUDA only) or 'bf16-mixed' force one. Losses are computed in float32 either way.",
    )
    accelerator: AcceleratorName = Field(default="auto", description="Lightning accelerator: auto, cpu, gpu/cuda, mps.")
    devices: int | Literal["auto"] = Field(default="auto", description="Devices per node; more than 1 trains with DDP.")
    early_stopping_patience: int | None = Field(
        default=5, ge=1, description="Stop after this many validations without a better validation score; None: never."
    )
    checkpoint_every_n_steps: int = Field(
        default=500, ge=0, description="Also write last.ckpt every this many steps (0: only at epoch ends)."
    )
    limit_val_batches: int | float = Field(
        default=1.0, description="Validation batches per epoch: a count, or a fraction of the validation set."
    )
    export: Literal["best", "last"] = Field(
        default="best",
        description="Which weights become model.onnx: the best validation checkpoint, or the final weights "
        "(fine-tuning keeps its validation data apart from model selection).",
    )
    out: Path = Field(description="Output directory for checkpoints, logs, model.onnx and metrics.json.")
    seed: int = Field(default=0, description="Seed of weight initialisation, shuffling and augmentation.")
    progress_bar: bool = Field(default=True, description="Show a progress bar (rich on a terminal).")

    @field_validator("limit_val_batches")
    @classmethod
    def _positive_limit(cls, value: int | float) -> int | float:
        if value <= 0 or (isinstance(value, float) and value > 1.0):
            raise ValueError(f"must be a positive batch count or a fraction in (0, 1], got {value}")
        return value

    @field_validator("devices")
    @classmethod
    def _positive_devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1 or 'auto', got {value}")
        return value

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
