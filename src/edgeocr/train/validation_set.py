"""Keep the best checkpoint honest when a resumed run validates on another set.

A run's best checkpoint is the one with the best validation score. Scores from two validation sets
cannot be compared: when a run resumes with a different set (the synthetic generator changed, or
``--val`` names another folder), a score kept from the old set can stand above everything the new
set gives, and ``export='best'`` then exports stale weights. Training `default` v4 (2026-11-22) that exported step
16,500 of a run that had trained to step 21,500 (95.8 % on the old set, 94.9 % at best on the new).

:func:`fingerprint` hashes what a validation set holds; :class:`ValidationSetGuard` stores it in
every checkpoint and, on resuming from a checkpoint made with another set (or with no fingerprint,
as before this guard), forgets the best score and early stopping's record, so that the best is
chosen again among validations on this set.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset


def _feed(hasher: Any, item: Any) -> None:
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        hasher.update(f"{item.dtype}{item.shape}".encode())
        hasher.update(np.ascontiguousarray(item).tobytes())
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        hasher.update(type(item).__name__.encode())
        for field in dataclasses.fields(item):
            _feed(hasher, getattr(item, field.name))
    elif isinstance(item, dict):
        for key in sorted(item, key=str):
            hasher.update(str(key).encode())
            _feed(hasher, item[key])
    elif isinstance(item, (list, tuple)):
        hasher.update(f"[{len(item)}".encode())
        for part in item:
            _feed(hasher, part)
    else:
        hasher.update(repr(item).encode())


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 of every item of ``dataset`` (images, texts, targets, skip reasons), in order."""
    hasher = hashlib.sha256()
    for index in range(len(dataset)):  # type: ignore[arg-type]
        _feed(hasher, dataset[index])
    return hasher.hexdigest()


class ValidationSetGuard(Callback):
    """Saves the validation set's fingerprint in checkpoints; resets the best score when it changed."""

    def __init__(self, dataset_fingerprint: str, best: ModelCheckpoint, early_stopping: EarlyStopping | None) -> None:
        self.fingerprint = dataset_fingerprint
        self.best = best
        self.early_stopping = early_stopping
        self.restored: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict.get("fingerprint")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the checkpoint's callback states are restored, before any training or validation
        # (a run resumed at its max_steps trains nothing but still validates its final weights).
        if trainer.ckpt_path is None or self.restored == self.fingerprint:
            return
        known = self.restored is not None
        rank_zero_warn(
            (
                "the validation set differs from the one this checkpoint was validated on"
                if known
                else "this checkpoint does not say which validation set it was validated on"
            )
            + f"; its best score ({self.best.best_model_score}) is forgotten and the best checkpoint is chosen "
            "again among validations on this set"
        )
        reset_best(self.best)
        if self.early_stopping is not None:
            self.early_stopping.wait_count = 0
            self.early_stopping.best_score = torch.tensor(
                -torch.inf if self.early_stopping.mode == "max" else torch.inf
            )
        self.restored = self.fingerprint


def reset_best(best: ModelCheckpoint) -> None:
    """Forget every score ``best`` keeps, as if no validation had run yet."""
    worst = torch.tensor(-torch.inf if best.mode == "max" else torch.inf)
    best.best_model_score = None
    best.best_model_path = ""
    best.best_k_models = {}
    best.kth_best_model_path = ""
    best.kth_value = worst
