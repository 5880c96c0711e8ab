"""Give the final weights of a run their chance to be exported as the best.

Validation runs at epoch ends. A run that stops on ``max_steps`` in mid-epoch therefore ends with
weights that no validation has seen, and they are the ones the learning-rate schedule annealed
furthest: ``export='best'`` would pass them over for an earlier, less trained checkpoint.
:class:`ValidationSteps` records the steps validated in this invocation;
:func:`validate_final_weights` validates the final weights when the last step is not among them
and, when they beat the best checkpoint's score, saves them as the best checkpoint.
:func:`exported_weights_metrics` is what every run calls after fitting (:func:`edgeocr.train.run.execute`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader


class ValidationSteps(Callback):
    """Remembers the global steps at which a validation ran during fitting (sanity checks aside)."""

    def __init__(self) -> None:
        self.steps: set[int] = set()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.steps.add(trainer.global_step)


def validate_final_weights(
    trainer: L.Trainer, module: L.LightningModule, val_loader: DataLoader, best: ModelCheckpoint, seen: ValidationSteps
) -> dict[str, Any] | None:
    """Validate the module's current (final) weights unless this step was validated already.

    Returns None when nothing was done, else ``{"step", "score", "previous_best", "became_best",
    "metrics"}`` (``metrics``: every validation figure of the final weights). When the final weights
    score better than ``best``'s best checkpoint (or there is none), they are saved in its place, so
    that exporting the best exports them, and the module keeps them."""
    if trainer.global_step in seen.steps or best.monitor is None or best.dirpath is None:
        return None
    results = trainer.validate(module, dataloaders=val_loader, verbose=False)
    score = results[0].get(best.monitor) if results else None
    if score is None:
        return None
    score = float(score)
    previous = None if best.best_model_score is None else float(best.best_model_score)
    became_best = previous is None or (score > previous if best.mode == "max" else score < previous)
    if became_best:
        path = Path(best.dirpath) / f"{best.filename}{best.FILE_EXTENSION}"
        trainer.save_checkpoint(path)
        best.best_model_path = str(path)
        best.best_model_score = torch.tensor(score)
    return {
        "step": trainer.global_step,
        "score": score,
        "previous_best": previous,
        "became_best": became_best,
        "metrics": {key: finite_or_none(value) for key, value in results[0].items()},
    }


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def exported_weights_metrics(run: Any) -> tuple[dict[str, float | None], dict[str, Any] | None]:
    """(validation metrics of the weights a finished run exports, the final-weights check or None).

    ``run`` is a trainer's run object: ``trainer``, ``module``, ``val_loader``, ``best_checkpoint``,
    ``validation_steps``, ``cfg.export`` and ``final_validation()`` (which validates the exported
    weights and leaves them in the module). Final weights that became the best are in the module
    already and were just validated, so they are not validated a second time."""
    check = (
        validate_final_weights(run.trainer, run.module, run.val_loader, run.best_checkpoint, run.validation_steps)
        if run.cfg.export == "best"
        else None
    )
    final_metrics = check.pop("metrics") if check else None
    if check and check["became_best"]:
        return final_metrics, check
    return run.final_validation(), check
