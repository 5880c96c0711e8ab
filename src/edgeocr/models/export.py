"""Export a recogniser to ONNX with its JSON sidecar, for torch-free inference.

The exported graph takes ``image`` float32 ``[N, 1, H, W]`` (N and W dynamic) and returns
``probs`` float32 ``[N, W / 4, C]``: softmax is part of the graph, so the runtime decodes the
output directly. The sidecar (``model.json`` beside ``model.onnx``) carries the configuration
and the SHA-256 of the ``.onnx`` bytes; see :mod:`edgeocr.core.sidecar`.

The legacy TorchScript exporter (``dynamo=False``) is used: it handles LSTM/GRU with a dynamic
batch and sequence length reliably.

Imported architectures (PP-OCR) are exported without constant folding: every parameter stays an
initialiser named ``model.`` + its ``state_dict`` key, so the ``.onnx`` is also the file fine-tuning
starts from (:func:`edgeocr.models.pretrained.load_exported`). ONNX Runtime folds batch norms and
transposes when it loads the graph, so reading is as fast and as exact either way.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel
from torch import nn

import edgeocr
from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.sidecar import DerivedFrom, ModelSidecar, sha256_hex, sidecar_path
from edgeocr.models.config import RecognizerConfig

INPUT_NAME = "image"
OUTPUT_NAME = "probs"
PARAMETER_PREFIX = "model."  # initialiser names of an unfolded export: this + the state_dict key


class _WithSoftmax(nn.Module):
    """Wraps a logits model so that the exported graph returns probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images), dim=-1)


def _onnx_bytes(model: nn.Module, cfg: RecognizerConfig, opset: int) -> bytes:
    from edgeocr.models.factory import is_imported

    # Batch 2 and a non-minimal width so that neither dimension gets baked in as a constant 1.
    example_width = min(cfg.max_width, max(cfg.min_width, 4 * cfg.width_multiple))
    example = torch.zeros(2, 1, cfg.input_height, example_width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Known, checked-harmless exporter notices (tests run the ONNX model at other batch sizes
        # and widths): the legacy-exporter deprecation, the RNN batch-size caution, and RNN input
        # checks on the channel size, which is static anyway.
        warnings.filterwarnings(
            "ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings(
            "ignore",
            message=r"Exporting a model to ONNX with a batch_size other than 1",
            category=UserWarning,
        )
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        # PP-OCR's attention computes its scale from a shape; the traced constant is the same for every width.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"rapidocr\.")
        torch.onnx.export(
            _WithSoftmax(model),
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "frames"}},
            opset_version=opset,
            do_constant_folding=not is_imported(cfg.arch),
            dynamo=False,
        )
    return buffer.getvalue()


def write_onnx_pair(
    model: nn.Module,
    path: Path | str,
    onnx_bytes: Callable[[nn.Module], bytes],
    sidecar_for: Callable[[bytes], BaseModel],
) -> Path:
    """Export ``model`` in eval mode with ``onnx_bytes`` and write ``path`` and its sidecar; return ``path``.

    ``sidecar_for`` builds the sidecar from the ONNX bytes (it records their SHA-256). Each file
    is written atomically (temporary file in the same directory, then rename). The ``.onnx`` is
    written first: if the run dies in between, a stale or missing sidecar no longer matches the
    new file and the runtime refuses the pair instead of misreading it.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"the model path must end in .onnx, got {path}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            data = onnx_bytes(model)
    finally:
        model.train(was_training)
    atomic_write_bytes(path, data)
    atomic_write_bytes(sidecar_path(path), sidecar_for(data).to_json().encode("utf-8"))
    return path


def _with_provenance(data: bytes, derived_from: DerivedFrom) -> bytes:
    """The ONNX bytes with the source's licence and attribution in the graph's metadata, so that the
    model file carries them even without its sidecar."""
    import onnx

    model = onnx.load_model_from_string(data)
    for key, value in (
        ("derived_from", derived_from.title),
        ("licence", derived_from.licence),
        ("attribution", derived_from.attribution),
        ("notice", derived_from.notice),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def export_onnx(model: nn.Module, cfg: RecognizerConfig, path: Path | str, opset: int = 17) -> Path:
    """Write ``path`` (``.onnx``) and its sidecar ``path.with_suffix('.json')``; return ``path``.

    A model of an imported architecture records the pretrained source it derives from (licence,
    attribution, notice) in its sidecar and in the ONNX metadata."""
    from edgeocr.models.sources import source_for_arch

    source = source_for_arch(cfg.arch)
    derived_from = source.derived_from() if source is not None else None

    def sidecar_for(data: bytes) -> ModelSidecar:
        return ModelSidecar(
            edgeocr_version=edgeocr.__version__,
            onnx_file=Path(path).name,
            onnx_sha256=sha256_hex(data),
            opset=opset,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            output_kind="probs",
            charset_fingerprint=cfg.charset_obj.fingerprint,
            config=cfg,
            derived_from=derived_from,
        )

    def onnx_bytes(network: nn.Module) -> bytes:
        data = _onnx_bytes(network, cfg, opset)
        return _with_provenance(data, derived_from) if derived_from is not None else data

    return write_onnx_pair(model, path, onnx_bytes, sidecar_for)


def export_weights_file(weights: Path | str, path: Path | str, opset: int = 17) -> Path:
    """Export a weights file or training checkpoint (see :mod:`edgeocr.models.weights`) to ``path``.

    Writes ``path`` (``.onnx``), its sidecar and ``model.pt``-style weights beside it (not for an
    imported architecture, whose ``.onnx`` is its fine-tuning weights), so that a checkpoint of a
    run still in progress can be shipped and fine-tuned like a finished one.
    """
    from edgeocr.models.factory import build_from_config, is_imported
    from edgeocr.models.weights import load_weights, save_weights, weights_path

    cfg, state = load_weights(weights)
    network = build_from_config(cfg)
    network.load_state_dict(state)
    path = export_onnx(network.eval(), cfg, path, opset=opset)
    if not is_imported(cfg.arch):
        save_weights(network, cfg, weights_path(path))
    return path
