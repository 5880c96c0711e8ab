"""Trainable weights beside an exported model, so that a shipped model can be fine-tuned.

The ONNX file is for inference: its exporter folds batch norms into convolutions and reorders
recurrent gates, so it cannot give the training network back. ``model.pt`` (beside
``model.onnx``) holds the network's ``state_dict`` in float16 (half the size; the rounding is
far below what fine-tuning changes) together with its :class:`RecognizerConfig`, and is read
with ``torch.load(weights_only=True)``: no code runs when loading it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from pydantic import BaseModel
from torch import nn

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import ModelError
from edgeocr.models.config import RecognizerConfig

if TYPE_CHECKING:
    from edgeocr.core.sidecar import ModelSidecar

WEIGHTS_SUFFIX = ".pt"
FORMAT = "edgeocr-weights-1"
LIGHTNING_PREFIX = "model."  # the Lightning modules keep the network as self.model
ConfigT = TypeVar("ConfigT", bound=BaseModel)


def weights_path(model_path: Path | str) -> Path:
    """``model.pt`` for ``model.onnx``."""
    return Path(model_path).with_suffix(WEIGHTS_SUFFIX)


def trainable_weights(onnx: Path | str, sidecar: ModelSidecar | None) -> Path | None:
    """The file to read an exported model's trainable weights from, or None when it has none.

    The ``.pt`` beside the ``.onnx`` wins (a pruned network's layers are not the factory's); without
    one, the ``.onnx`` of an imported architecture (PP-OCR) not optimised since its export carries
    its trainable weights itself.
    """
    from edgeocr.models.factory import is_imported

    weights = weights_path(onnx)
    if weights.is_file():
        return weights
    if sidecar is not None and sidecar.optimization is None and is_imported(sidecar.config.arch):
        return Path(onnx)
    return None


def save_state(model: nn.Module, config: BaseModel, path: Path | str, file_format: str = FORMAT) -> Path:
    """Write ``model``'s weights (floating tensors as float16) and ``config`` to ``path`` atomically."""
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save({"format": file_format, "config": config.model_dump(mode="json"), "state_dict": state}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_state(
    path: Path | str, config_type: type[ConfigT], file_format: str = FORMAT, hyperparameter: str = "recognizer"
) -> tuple[ConfigT, dict[str, torch.Tensor]]:
    """The configuration and float32 ``state_dict`` of a weights file of ``file_format`` or a training checkpoint.

    A Lightning checkpoint is accepted too: its network weights (``model.*``) and the
    configuration saved in its hyperparameters under ``hyperparameter``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise ModelError(f"{path}: not a readable weights file or checkpoint ({exc})") from exc
    kind = f"edgeocr {hyperparameter} weights file or training checkpoint"
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: not an {kind}")
    if raw.get("format") == file_format:
        config, state = raw.get("config"), raw.get("state_dict")
    elif "state_dict" in raw and isinstance(raw.get("hyper_parameters"), dict):
        config = raw["hyper_parameters"].get(hyperparameter)
        state = {k[len(LIGHTNING_PREFIX) :]: v for k, v in raw["state_dict"].items() if k.startswith(LIGHTNING_PREFIX)}
    else:
        raise ModelError(f"{path}: not an {kind}")
    if not isinstance(config, dict) or not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: weights file without a {hyperparameter} configuration or weights")
    try:
        cfg = config_type(**config)
    except Exception as exc:
        raise ModelError(f"{path}: invalid {hyperparameter} configuration ({exc})") from exc
    return cfg, {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def save_weights(model: nn.Module, cfg: RecognizerConfig, path: Path | str) -> Path:
    """Write a recogniser's weights (float16) and configuration to ``path`` atomically."""
    return save_state(model, cfg, path)


def load_weights(path: Path | str) -> tuple[RecognizerConfig, dict[str, torch.Tensor]]:
    """The configuration and float32 ``state_dict`` of a recogniser weights file or training checkpoint."""
    return load_state(path, RecognizerConfig)
