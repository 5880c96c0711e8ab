"""Int8 post-training quantisation of a recogniser with ONNX Runtime, and the per-layer sensitivity it needs.

Static quantisation (``quantize_static``) of the convolutions and matrix products and the ops between
them (ReLU, pooling, reshapes, so that int8 tensors flow from one convolution to the next), calibrated on
real line batches (:mod:`.calibration`), with per-channel symmetric int8 weights. Formats:

* ``qoperator`` (the default for ONNX Runtime): QLinearConv / QLinearMatMul operators, ONNX Runtime only;
* ``qdq`` (the default for TensorRT, which reads only this): QuantizeLinear/DequantizeLinear pairs around
  each quantised op, which ONNX Runtime fuses into int8 kernels too.

Activations: uint8 with QOperator (U8S8), int8 with QDQ (S8S8, symmetric for TensorRT). Measured on this
project's Xeon (AVX512-VNNI, AMX), 2 threads, end-to-end at batch 64: QOperator U8S8 2.39x the float
model, QDQ S8S8 2.16x, QDQ U8S8 2.06x, and QOperator S8S8 0.20x (ONNX Runtime has no fast S8S8
QLinearConv kernel: avoid that pair). ONNX Runtime has no static int8
LSTM, and the LSTM holds most of the default recogniser's weights, so LSTMs are then quantised
dynamically (``DynamicQuantizeLSTM``: int8 weights, activations quantised per call); GRUs stay float
(ONNX Runtime has no int8 GRU kernel). The final softmax stays float so confidences keep full
resolution.

:func:`node_sensitivity` quantises one layer at a time and measures how far the output moves from the
float model's on the calibration batches; the accuracy gate of :mod:`.pipeline` keeps the most
sensitive layers in float, one by one, until the accuracy drop is within the threshold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort

from edgeocr.core.errors import ModelError
from edgeocr.optimize.calibration import BatchFeed

STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")  # the layers with weights: the gate's candidates
DYNAMIC_OP_TYPES = ("LSTM",)
FLOAT_OP_TYPES = ("Softmax",)  # never quantised: the probabilities keep full resolution
QuantFormatName = Literal["qdq", "qoperator"]
ActivationType = Literal["int8", "uint8"]
FASTEST_ACTIVATIONS = {"qoperator": "uint8", "qdq": "int8"}  # measured, see above


@dataclass(frozen=True)
class Int8Settings:
    """How a model is quantised to int8.

    ``quant_format``: 'qdq' or 'qoperator'. ``activations``: 'int8' (S8S8) or 'uint8' (U8S8); weights are
    always int8, per output channel when ``per_channel``. ``quantize_lstm``: LSTM weights int8 (dynamic;
    ONNX Runtime only, so off for TensorRT). ``symmetric_activations``: zero points 0 (TensorRT needs
    that). ``calibration``: 'minmax', 'entropy' or 'percentile'.
    """

    quant_format: QuantFormatName = "qoperator"
    activations: ActivationType = "uint8"
    per_channel: bool = True
    quantize_lstm: bool = True
    symmetric_activations: bool = False
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"

    def describe(self, op_types: Collection[str]) -> dict:
        """The settings as applied to a model with these ONNX op types (its recurrent layers as they end up)."""
        recurrent = {}
        if "LSTM" in op_types:
            recurrent["lstm"] = "int8 (dynamic)" if self.quantize_lstm else "float"
        if "GRU" in op_types:
            recurrent["gru"] = "float (ONNX Runtime has no int8 GRU)"
        return {
            "format": self.quant_format,
            "activations": self.activations,
            "weights": "int8",
            "per_channel": self.per_channel,
            **recurrent,
            "symmetric_activations": self.symmetric_activations,
            "calibration_method": self.calibration,
        }


def op_types(model: Path) -> set[str]:
    """The ONNX op types of ``model``'s graph."""
    return {node.op_type for node in onnx.load(str(model)).graph.node}


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """ONNX Runtime's quantiser logs routine notices through the root logger; keep the CLI output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _in_scratch_dir() -> Iterator[None]:
    """Run the block in an empty temporary working directory, removed afterwards.

    ONNX Runtime's symbolic shape inference, when it cannot finish, saves its partial model to
    ``sym_shape_infer_temp.onnx`` plus a ``<uuid>.data`` file in the current directory; this keeps them out
    of the user's folder. The working directory is process-wide: paths used inside the block must be absolute.
    """
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="edgeocr-prepare-") as scratch:
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(previous)


def prepare_for_quantisation(model: Path, out: Path) -> Path:
    """``quant_pre_process``: shape inference and graph optimisation, so that ranges cover fused ops."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(model).absolute(), Path(out).absolute()  # before the working directory changes
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_quantiser(), _in_scratch_dir():
            try:
                quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
            except Exception as exc:
                if "symbolic shape inference" not in str(exc):
                    raise
                # ONNX Runtime's symbolic inference gives up on some graphs (the imported PP-OCR recogniser's
                # attention reshapes); ONNX's own shape inference is enough for the conv and matmul ranges.
                quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    except Exception as exc:  # the pre-processor raises whatever onnx or its shape inference raise
        raise ModelError(f"cannot prepare {model} for quantisation: {exc}") from exc
    return out


def quantisable_nodes(model: Path, settings: Int8Settings) -> list[str]:
    """Names of the nodes :func:`quantize_int8` quantises, in graph order."""
    types = STATIC_OP_TYPES + (DYNAMIC_OP_TYPES if settings.quantize_lstm else ())
    return [node.name for node in onnx.load(str(model)).graph.node if node.op_type in types]


def quantize_int8(
    prepared: Path,
    out: Path,
    batches: Sequence[np.ndarray],
    input_name: str,
    settings: Int8Settings,
    exclude: Sequence[str] = (),
    only: Sequence[str] | None = None,
) -> Path:
    """Quantise ``prepared`` (see :func:`prepare_for_quantisation`) to ``out``; ``exclude`` stays float.

    ``only``: quantise just these nodes (sensitivity analysis). Returns ``out``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    graph = onnx.load(str(prepared)).graph
    wanted = [n for n in graph.node if n.name not in exclude and (only is None or n.name in only)]
    static_nodes = [n.name for n in wanted if n.op_type in STATIC_OP_TYPES]
    lstm_nodes = [n.name for n in wanted if n.op_type in DYNAMIC_OP_TYPES] if settings.quantize_lstm else []
    kept_float = [*exclude, *(n.name for n in graph.node if n.op_type in FLOAT_OP_TYPES)]
    if not static_nodes and not lstm_nodes:
        raise ModelError(
            f"{prepared}: nothing to quantise (no {', '.join(STATIC_OP_TYPES + DYNAMIC_OP_TYPES)} "
            "node left after the exclusions)"
        )
    activation = QuantType.QInt8 if settings.activations == "int8" else QuantType.QUInt8
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[settings.calibration]
    with tempfile.TemporaryDirectory(prefix="edgeocr-quant-") as tmp, _quiet_quantiser():
        static_out = Path(tmp) / "static.onnx" if lstm_nodes else out
        source = prepared
        if static_nodes:
            quantize_static(
                str(prepared),
                str(static_out),
                BatchFeed(batches, input_name),
                quant_format=QuantFormat.QDQ if settings.quant_format == "qdq" else QuantFormat.QOperator,
                nodes_to_quantize=list(only) if only is not None else None,
                nodes_to_exclude=kept_float,
                per_channel=settings.per_channel,
                activation_type=activation,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options={"ActivationSymmetric": settings.symmetric_activations},
            )
            source = static_out
        if lstm_nodes:
            quantize_dynamic(
                str(source),
                str(out),
                op_types_to_quantize=list(DYNAMIC_OP_TYPES),
                nodes_to_quantize=lstm_nodes,
                weight_type=QuantType.QInt8,
            )
    return out


def outputs(model: Path, batches: Sequence[np.ndarray], input_name: str, threads: int) -> list[np.ndarray]:
    """The model's first output on each batch (CPU)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return [session.run(None, {input_name: batch})[0] for batch in batches]


def output_change(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> tuple[float, float]:
    """(share of frames whose best class changed, mean absolute difference of the outputs)."""
    flips = np.concatenate([(r.argmax(-1) != c.argmax(-1)).ravel() for r, c in zip(reference, candidate)])
    diff = np.concatenate([np.abs(r - c).ravel() for r, c in zip(reference, candidate)])
    return float(flips.mean()), float(diff.mean())


def node_sensitivity(
    prepared: Path, batches: Sequence[np.ndarray], input_name: str, settings: Int8Settings, threads: int = 0
) -> list[dict]:
    """Each quantisable node quantised alone: how much the output moves, most damaging first."""
    reference = outputs(prepared, batches, input_name, threads)
    ranking = []
    with tempfile.TemporaryDirectory(prefix="edgeocr-sensitivity-") as tmp:
        for index, node in enumerate(quantisable_nodes(prepared, settings)):
            single = quantize_int8(prepared, Path(tmp) / f"{index}.onnx", batches, input_name, settings, only=[node])
            flips, diff = output_change(reference, outputs(single, batches, input_name, threads))
            ranking.append({"node": node, "frames_changed": round(flips, 6), "mean_abs_diff": float(f"{diff:.3g}")})
    return sorted(ranking, key=lambda r: (r["frames_changed"], r["mean_abs_diff"]), reverse=True)
