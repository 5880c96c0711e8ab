"""Import text detectors pretrained on real images from installed packages, offline, as our own networks.

The sources (:data:`edgeocr.models.sources.DETECTOR_SOURCES`) are PP-OCRv6 small's detector,
``PP-OCRv6_det_small.onnx`` in the ``rapidocr`` wheel, and PP-OCRv4 mobile's,
``ch_PP-OCRv4_det_infer.onnx`` in ``rapidocr-onnxruntime``, each known by its SHA-256: another file
is refused, because the mapping below is checked for that file only
(``tests/test_pretrained_detector.py``).

Each file is a deploy-form graph whose parameterised layers are convolutions (a folded batch norm's
bias either as the node's third input or as the constant of the ``Add`` that consumes it), the
batch norms left unfolded, and (v4) learnable affine scale-and-shift pairs.
:class:`~edgeocr.models.ppocr_detector.PPOCRDetector` is the same deploy form, so its layers, taken
in the order the network runs them (recorded with forward hooks), meet the graph's in graph order
one to one: paddle2onnx writes nodes in the order Paddle ran them, and RapidOCR's PyTorch forward
runs the layers in Paddle's order. The kinds must match layer by layer and every shape is checked;
a mismatch is a :class:`ModelError`, and the parity test compares the probability maps with ONNX
Runtime's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeocr.core.detector_config import DetectorConfig
from edgeocr.core.errors import ModelError
from edgeocr.models.pretrained import _onnx, read_verified, source_file
from edgeocr.models.sources import DETECTOR_SOURCES, PretrainedSource, get_detector_source

if TYPE_CHECKING:
    import onnx
    from torch import nn

__all__ = [
    "DETECTOR_SOURCES",
    "SourceLayer",
    "deploy_layers",
    "import_detector",
    "load_detector_source",
    "source_state",
]


@dataclass(frozen=True)
class SourceLayer:
    """One parameterised layer of a deploy-form graph: a convolution (``weight``, ``bias`` or None), a batch
    norm (``weight``, ``bias``, ``running_mean``, ``running_var``, ``eps``) or a learnable affine scale
    and shift (``scale``, ``bias``: a ``Mul`` by one constant, then an ``Add`` of one)."""

    kind: str  # "conv", "norm" or "affine"
    node: str
    tensors: dict[str, np.ndarray]


def deploy_layers(model: onnx.ModelProto) -> list[SourceLayer]:
    """The parameterised layers of a deploy-form graph in graph order; constants (initialisers or
    ``Constant`` nodes) are followed through ``Identity`` nodes."""
    from onnx import helper, numpy_helper

    graph = model.graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # older exports hold their weights in Constant nodes
        if node.op_type == "Constant":
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    aliases = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def constant(name: str) -> np.ndarray | None:
        while name in aliases:
            name = aliases[name]
        return tensors.get(name)

    def users(name: str) -> list[Any]:
        found = consumers.get(name, [])
        while len(found) == 1 and found[0].op_type == "Identity":
            found = consumers.get(found[0].output[0], [])
        return found

    def scalars(node: Any) -> list[np.ndarray]:
        return [c for c in (constant(name) for name in node.input) if c is not None and c.size == 1]

    layers = []
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = constant(node.input[1])
            if weight is None:
                raise ModelError(f"convolution {name} has no constant weight")
            channels = weight.shape[0] if node.op_type == "Conv" else weight.shape[1]
            bias = constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if bias is None:
                after = users(node.output[0])
                if len(after) == 1 and after[0].op_type == "Add":
                    operands = [constant(x) for x in after[0].input]
                    bias = next((c.reshape(-1) for c in operands if c is not None and c.size == channels), None)
            layers.append(SourceLayer("conv", name, {"weight": weight, **({"bias": bias} if bias is not None else {})}))
        elif node.op_type == "BatchNormalization":
            values = [constant(x) for x in node.input[1:5]]
            if any(v is None for v in values):
                raise ModelError(f"batch norm {name} has no constant statistics")
            eps = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-5)
            keys = ("weight", "bias", "running_mean", "running_var")
            layers.append(SourceLayer("norm", name, {**dict(zip(keys, values, strict=True)), "eps": np.float32(eps)}))
        elif node.op_type == "Mul" and len(scalars(node)) == 1:
            after = users(node.output[0])
            if len(after) == 1 and after[0].op_type == "Add" and len(scalars(after[0])) == 1:
                scale, shift = scalars(node)[0], scalars(after[0])[0]
                layers.append(SourceLayer("affine", name, {"scale": scale.reshape(1), "bias": shift.reshape(1)}))
    return layers


def _layer_kind(module: nn.Module) -> str | None:
    from torch import nn as tnn

    if isinstance(module, (tnn.Conv2d, tnn.ConvTranspose2d)):
        return "conv"
    if isinstance(module, tnn.BatchNorm2d):
        return "norm"
    own = dict(module.named_parameters(recurse=False))
    if set(own) == {"scale", "bias"} and all(p.numel() == 1 for p in own.values()):
        return "affine"  # RapidOCR's LearnableAffineBlock
    return None


def _run_order(network: nn.Module) -> list[tuple[str, str]]:
    """(name, kind) of the network's parameterised layers in the order ``forward`` runs them (a forward
    pass on zeros)."""
    import torch

    order: list[tuple[str, str]] = []
    hooks = [
        module.register_forward_hook(lambda *_, name=name, kind=kind: order.append((name, kind)))
        for name, module in network.named_modules()
        if (kind := _layer_kind(module)) is not None
    ]
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def source_state(model: onnx.ModelProto, network: nn.Module) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The ``state_dict`` entries of ``network``'s inference path from a deploy-form graph (kinds and shapes
    checked), and the batch norms' epsilons by module name."""
    ran = _run_order(network)
    layers = deploy_layers(model)
    if [kind for _, kind in ran] != [layer.kind for layer in layers]:
        counts = {k: sum(1 for _, x in ran if x == k) for k in ("conv", "norm", "affine")}
        found = {k: sum(1 for layer in layers if layer.kind == k) for k in ("conv", "norm", "affine")}
        raise ModelError(f"the source's layers ({found}) do not fit the convolutions etc. the network runs ({counts})")
    state: dict[str, np.ndarray] = {}
    eps: dict[str, float] = {}
    for (name, _), layer in zip(ran, layers, strict=True):
        module = network.get_submodule(name)
        values = dict(layer.tensors)
        if layer.kind == "norm":
            eps[name] = float(values.pop("eps"))
        if layer.kind == "conv" and (module.bias is None) != ("bias" not in values):
            has = "has" if "bias" in values else "has no"
            raise ModelError(f"{layer.node}: the source {has} bias, {name} does not fit")
        for key, value in values.items():
            target = getattr(module, key)
            if tuple(target.shape) != tuple(np.shape(value)):
                raise ModelError(f"{layer.node}: {key} {np.shape(value)} does not fit {name} {tuple(target.shape)}")
            state[f"{name}.{key}"] = value
    return state, eps


def load_detector_source(name: str = "ppocrv6-det") -> nn.Module:
    """The source detector as a trainable network with the source's weights (threshold head untrained)."""
    import torch

    from edgeocr.models.detector import build_detector

    source = get_detector_source(name)
    data = read_verified(source_file(source), source.sha256, source.title)
    model = _onnx().load_from_string(data)
    network = build_detector(source.arch)
    values, eps = source_state(model, network)
    state = {key: torch.from_numpy(np.array(value)) for key, value in values.items()}
    missing, unexpected = network.load_state_dict(state, strict=False)
    for name, value in eps.items():
        network.get_submodule(name).eps = value
    # Layers the inference path never runs keep their initial values: the training-only threshold head,
    # and (v4) the activations' affine blocks of stride-2 layers, which apply no activation. Every layer
    # that runs has its entries in the state, so its module names are the state's prefixes.
    ran = {key.rpartition(".")[0] for key in state}
    untouched = [key for key in missing if key.rpartition(".")[0] in ran]
    if untouched or unexpected:
        raise ModelError(f"{source.title}: weights not loaded {untouched}, unknown {unexpected}")
    return network.eval()


def import_detector(
    out: Path | str, name: str = "ppocrv6-det", **config: Any
) -> tuple[Path, DetectorConfig, PretrainedSource]:
    """Export the source detector as our ONNX and sidecar in the folder ``out`` (``model.onnx``,
    ``model.json``); ``config`` overrides fields of the architecture's default :class:`DetectorConfig`."""
    from edgeocr.models.detector import default_detector_config
    from edgeocr.models.detector_export import export_detector_onnx

    source = get_detector_source(name)
    network = load_detector_source(name)
    cfg = default_detector_config(source.arch, **config)
    path = export_detector_onnx(network, cfg, Path(out) / "model.onnx", derived_from=source.derived_from())
    return path, cfg, source
