"""``edgeocr train``: check the ``train`` extra, build a :class:`TrainConfig`, run it.

This module imports neither torch nor Lightning at import time, so the CLI can import it
cheaply and a missing extra becomes a one-line :class:`EdgeOCRError` instead of a traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from edgeocr.core.errors import EdgeOCRError

# Modules of the ``train`` extra (and the ``synth`` extra it includes) that training imports.
TRAIN_MODULES = ("torch", "lightning", "onnx", "rapidfuzz", "albumentations", "lmdb", "PIL")
INSTALL_HINT = "pip install torch==2.13.0 && pip install 'edgeocr[train]'"


def require_train_extra() -> None:
    """Raise EdgeOCRError naming the missing modules when the ``train`` extra is not installed."""
    missing = [name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise EdgeOCRError(f"training needs the 'train' extra (missing: {', '.join(missing)}): {INSTALL_HINT}")


def _parse_devices(devices: int | str) -> int | str:
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    return devices


def train_command(
    arch: str,
    data: Sequence[Path],
    val: Path | None,
    synthetic: int,
    epochs: int,
    batch_size: int,
    lr: float,
    workers: int,
    precision: str,
    accelerator: str,
    devices: int | str,
    out: Path,
    resume: bool,
    seed: int = 0,
    max_steps: int | None = None,
    limit_val_batches: int | float = 1.0,
    val_synthetic: int = 2000,
    synthetic_seed: int | None = None,
    synthetic_ratio: float | None = None,
    checkpoint_every_n_steps: int = 500,
    early_stopping_patience: int | None = 5,
    num_nodes: int = 1,
    templates: Sequence[Path] = (),
    fonts: Sequence[Path] = (),
    progress: bool = True,
    warmup_fraction: float = 0.05,
    width_chunks: int = 4,
    init: Path | str | None = None,
    distill_weight: float = 0.0,
    distill_temperature: float = 2.0,
    freeze_stages: int = 0,
    report_data: Sequence[Path] = (),
    report_every_n_steps: int = 500,
    input_height: int | None = None,
    max_width: int | None = None,
    charset: str = "default",
) -> Path:
    """Train a recogniser and export it; returns the path of the exported ``model.onnx``.

    ``charset`` names one of :data:`edgeocr.core.charset.CHARSETS` ('default', 'ascii');
    ``synthetic`` is the number of synthetic lines rendered per epoch (0: datasets only);
    ``synthetic_seed`` defaults to ``seed``; ``templates`` and ``fonts`` add code-template
    catalogues and font directories for the synthetic data; ``progress`` shows a progress bar.
    Every other argument is the :class:`~edgeocr.train.trainer.TrainConfig` field of the same
    name. Invalid values raise :class:`EdgeOCRError` naming the field.
    """
    require_train_extra()
    from pydantic import ValidationError

    from edgeocr.core.charset import CHARSETS
    from edgeocr.train.trainer import TrainConfig, run_training

    if charset not in CHARSETS:
        raise EdgeOCRError(f"unknown charset {charset!r}; choose one of {', '.join(CHARSETS)}")
    try:
        cfg = TrainConfig(
            arch=arch,
            charset=CHARSETS[charset],
            data=tuple(Path(d) for d in data),
            val=val,
            synthetic_per_epoch=synthetic,
            synthetic_seed=seed if synthetic_seed is None else synthetic_seed,
            synthetic_ratio=synthetic_ratio,
            val_synthetic=val_synthetic,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            workers=workers,
            precision=precision,
            accelerator=accelerator,
            devices=_parse_devices(devices),
            early_stopping_patience=early_stopping_patience,
            checkpoint_every_n_steps=checkpoint_every_n_steps,
            limit_val_batches=limit_val_batches,
            num_nodes=num_nodes,
            templates=tuple(Path(t) for t in templates),
            fonts=tuple(Path(f) for f in fonts),
            out=Path(out),
            seed=seed,
            progress_bar=progress,
            warmup_fraction=warmup_fraction,
            width_chunks=width_chunks,
            init=None if init is None else Path(init),
            distill_weight=distill_weight,
            distill_temperature=distill_temperature,
            freeze_stages=freeze_stages,
            report_data=tuple(Path(d) for d in report_data),
            report_every_n_steps=report_every_n_steps,
            input_height=input_height,
            max_width=max_width,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        )
        raise EdgeOCRError(f"invalid training settings: {problems}") from None
    return run_training(cfg, resume=resume)
