"""Export a detector to ONNX with its JSON sidecar, and keep its trainable weights beside it.

The exported graph takes ``image`` float32 ``[N, 3, H, W]`` (normalised BGR; N, H and W
dynamic, H and W multiples of 32) and returns ``prob`` float32 ``[N, 1, H, W]``: the sigmoid is
in the graph and the threshold head is left out (only training uses it). The sidecar
(``model.json`` beside ``model.onnx``) is a :class:`DetectorSidecar`: the
:class:`DetectorConfig` and the SHA-256 of the ``.onnx`` bytes, checked by
:class:`edgeocr.runtime.detector.OnnxDetector` on load.

``model.pt`` holds the network's ``state_dict`` (float16) and its configuration, for
fine-tuning: the ONNX file has its batch norms folded away and cannot give the network back.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

import edgeocr
from edgeocr.core.detector_config import DetectorConfig, DetectorSidecar
from edgeocr.core.sidecar import DerivedFrom, sha256_hex
from edgeocr.models.export import write_onnx_pair
from edgeocr.models.weights import load_state, save_state

INPUT_NAME = "image"
OUTPUT_NAME = "prob"
WEIGHTS_FORMAT = "edgeocr-detector-weights-1"


def _onnx_bytes(model: nn.Module, cfg: DetectorConfig, opset: int) -> bytes:
    # Batch 2 and unequal, non-minimal sides so that no dimension is baked in as a constant.
    example = torch.zeros(2, 3, 2 * cfg.size_multiple, 3 * cfg.size_multiple)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Known, harmless exporter notices (tests run the graph at other sizes and batch counts).
        warnings.filterwarnings(
            "ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        # PP-OCR's padding slices: folding them is an optimisation the exporter skips, not an error.
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def export_detector_onnx(
    model: nn.Module,
    cfg: DetectorConfig,
    path: Path | str,
    opset: int = 17,
    derived_from: DerivedFrom | None = None,
) -> Path:
    """Write ``path`` (``.onnx``) and its sidecar ``path.with_suffix('.json')`` (atomically, the
    ``.onnx`` first: see :func:`~edgeocr.models.export.write_onnx_pair`); return ``path``.
    ``derived_from``: the third-party weights the model comes from (recorded in the sidecar)."""

    def sidecar_for(data: bytes) -> DetectorSidecar:
        return DetectorSidecar(
            edgeocr_version=edgeocr.__version__,
            onnx_file=Path(path).name,
            onnx_sha256=sha256_hex(data),
            opset=opset,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            config=cfg,
            derived_from=derived_from,
        )

    return write_onnx_pair(model, path, lambda network: _onnx_bytes(network, cfg, opset), sidecar_for)


def save_detector_weights(model: nn.Module, cfg: DetectorConfig, path: Path | str) -> Path:
    """Write a detector's weights (float16) and configuration to ``path`` atomically."""
    return save_state(model, cfg, path, WEIGHTS_FORMAT)


def load_detector_weights(path: Path | str) -> tuple[DetectorConfig, dict[str, torch.Tensor]]:
    """The configuration and float32 ``state_dict`` of a detector weights file or training checkpoint."""
    return load_state(path, DetectorConfig, WEIGHTS_FORMAT, hyperparameter="detector")
