"""The engine work that needs the optimisation extra: converting to OpenVINO IR (NNCF int8 optional) and its
sidecar, and torch itself as an engine for measuring precisions.

The engines that *read* (ONNX Runtime, OpenVINO, TensorRT) live in :mod:`edgeocr.runtime.engines`, so
what ``edgeocr optimize`` writes is read by ``--model`` without this extra:

* :func:`convert_to_openvino` writes ``model.xml`` / ``model.bin`` (optionally NNCF int8, optionally
  fp16 weights); :func:`write_openvino_sidecar` gives it a sidecar whose ``onnx_sha256`` is the SHA-256
  of the ``.xml`` bytes followed by the ``.bin`` bytes, which the runtime checks before loading.
* torch (:class:`TorchRecognizer`): eager or ``torch.compile``, float32 / bfloat16 autocast (CPU) /
  float16 (CUDA), from the ``.pt`` weights; used to measure precisions, not shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import ModelError
from edgeocr.core.sidecar import ModelSidecar, sidecar_path
from edgeocr.runtime.engines import EngineRecognizer, openvino_sha256, require, require_openvino
from edgeocr.runtime.recognizer import EngineConfig

# --- OpenVINO ----------------------------------------------------------------------------------


def openvino_names(onnx_nodes: Sequence[str]) -> list[str]:
    """OpenVINO's names for ONNX nodes: a Conv with a bias becomes ``NAME/WithoutBiases`` plus an Add ``NAME``."""
    return [name for node in onnx_nodes for name in (node, f"{node}/WithoutBiases")]


def convert_to_openvino(
    onnx_path: Path,
    out_xml: Path,
    *,
    int8_batches: Sequence[np.ndarray] | None = None,
    keep_float: Sequence[str] = (),
    fp16_weights: bool = False,
) -> Path:
    """Convert ``onnx_path`` to OpenVINO IR at ``out_xml`` (+ ``.bin``); NNCF int8 when ``int8_batches``.

    ``keep_float``: ONNX node names left in floating point by NNCF (the accuracy gate's exclusions).
    The width stays dynamic; NNCF calibrates on the batches as they come (several widths)."""
    ov = require_openvino()
    try:
        model = ov.Core().read_model(str(onnx_path))
    except Exception as exc:
        raise ModelError(f"OpenVINO cannot read {onnx_path}: {exc}") from exc
    if int8_batches is not None:
        nncf = require("nncf", "int8 with --engine openvino", "pip install 'edgeocr[optimize]'")
        nncf.set_log_level(logging.ERROR)  # its statistics tables and progress notes are not ours to print
        ignored = nncf.IgnoredScope(names=openvino_names(keep_float), types=["Softmax"], validate=False)
        model = nncf.quantize(
            model, nncf.Dataset(list(int8_batches)), subset_size=len(int8_batches), ignored_scope=ignored
        )
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out_xml), compress_to_fp16=fp16_weights)
    return out_xml


def write_openvino_sidecar(xml: Path, source: ModelSidecar, note: Any) -> Path:
    """The sidecar of an OpenVINO IR: the source's configuration, the IR's checksum, the optimisation note."""
    fields = source.model_dump(exclude={"settings_sha256"})  # to_json binds the settings to the IR's checksum
    sidecar = ModelSidecar(
        **{**fields, "onnx_file": xml.name, "onnx_sha256": openvino_sha256(xml), "optimization": note}
    )
    atomic_write_bytes(sidecar_path(xml), sidecar.to_json().encode("utf-8"))
    return xml


# --- torch ---------------------------------------------------------------------------------------


class _TorchSession:
    """``run`` over a torch recogniser (softmax added), on ``device`` with the given precision."""

    def __init__(self, network: Any, device: str, precision: str, compile_mode: str | None) -> None:
        import torch

        self._torch = torch
        self._device = device
        self._precision = precision
        network = network.eval().to(device)
        if precision == "fp16":
            network = network.half()
        self._network = torch.compile(network, mode=compile_mode, dynamic=False) if compile_mode else network

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        (batch,) = feeds.values()
        images = torch.from_numpy(batch).to(self._device)
        if self._precision == "fp16":
            images = images.half()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._precision == "bf16")
        with torch.inference_mode(), autocast:
            probs = torch.softmax(self._network(images).float(), dim=-1)
        return [probs.cpu().numpy()]


class TorchRecognizer(EngineRecognizer):
    """The ``.pt`` weights beside an exported model, run by torch with the runtime's preprocessing and decoding.

    ``precision``: 'fp32', 'bf16' (CPU autocast) or 'fp16' (CUDA); ``compile_mode``: a ``torch.compile``
    mode ('reduce-overhead' uses CUDA graphs) or None for eager."""

    def __init__(
        self,
        model_path: Path | str,
        engine: EngineConfig | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        compile_mode: str | None = None,
    ) -> None:  # noqa: D107
        self.device, self.precision, self.compile_mode = device, precision, compile_mode
        super().__init__(model_path, engine)

    def _open_session(self) -> _TorchSession:
        import torch

        from edgeocr.models.factory import build_from_config
        from edgeocr.models.weights import load_weights, weights_path

        cfg, state = load_weights(weights_path(self.model_path))
        network = build_from_config(cfg)
        network.load_state_dict(state)
        if self.engine.intra_op_threads:
            torch.set_num_threads(self.engine.intra_op_threads)
        return _TorchSession(network, self.device, self.precision, self.compile_mode)
