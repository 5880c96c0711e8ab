"""Trainable networks of exported models for pruning and distillation (needs torch).

An exported recogniser is ``model.onnx`` + sidecar ``model.json`` + weights ``model.pt`` beside
them (:mod:`edgeocr.models.weights`). Structured pruning leaves a network whose layer widths no
longer match its architecture name, so its ``model.pt`` is written in a format of its own
(:data:`PRUNED_WEIGHTS_FORMAT`): same contents, and :func:`load_network` rebuilds the network by
resizing the architecture's layers to the stored tensors before loading them. Nothing else changes:
the ONNX model and its sidecar run in the runtime like any other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgeocr.core.errors import ModelError, OutputError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.core.sidecar import load_sidecar, sidecar_path
from edgeocr.models.factory import build_from_config
from edgeocr.models.weights import load_state, load_weights, save_state, save_weights, trainable_weights, weights_path
from edgeocr.runtime.models import resolve_model

PRUNED_WEIGHTS_FORMAT = "edgeocr-weights-pruned-1"


def resolve_trainable_model(model: str | Path, role: str = "model") -> tuple[Path, Path]:
    """(``.onnx``, ``.pt``) of a shipped model name or an ``.onnx`` path whose sidecar and weights lie beside it.

    ``role`` names the model in messages ("teacher", "student"). Raises :class:`ModelError` naming
    the missing file.
    """
    onnx = resolve_model(model)
    sidecar = load_sidecar(sidecar_path(onnx))  # ModelError: missing or malformed sidecar
    weights = trainable_weights(onnx, sidecar)
    if weights is not None:
        return onnx, weights
    raise ModelError(
        f"the {role} {onnx} has no trainable weights beside it ({weights_path(onnx).name}); "
        "export it with its weights (edgeocr train or edgeocr export write them)"
    )


def check_output_dir(out_dir: Path, sources: list[Path], overwrite: bool) -> Path:
    """``out_dir`` made absolute, after refusing one that holds any of ``sources`` (a source model is never
    overwritten, even with ``overwrite``) or, without ``overwrite``, that already holds files.

    Checked before any work, so that a long run does not end in an error it could have had at once.
    """
    out = Path(out_dir).absolute().resolve()
    for source in sources:
        if Path(source).absolute().resolve().is_relative_to(out):
            raise OutputError(
                f"{out_dir} holds the source model {source}: choose another output folder "
                "(the source model is never overwritten)"
            )
    if not overwrite and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out_dir} already exists; choose another output folder or overwrite it")
    return out


def _fit_layers_to(network: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize ``network``'s parameters, buffers and layer attributes to the shapes in ``state`` (values follow)."""
    for name, tensor in state.items():
        owner_name, _, attr = name.rpartition(".")
        owner = network.get_submodule(owner_name)
        if attr in owner._parameters:
            # setattr, not _parameters[...]: recurrent layers keep their flat weight list in step this way.
            setattr(owner, attr, nn.Parameter(torch.empty_like(tensor)))
        elif attr in owner._buffers:
            owner._buffers[attr] = torch.empty_like(tensor)
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1] * module.groups
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = module.weight.shape[0]
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.RNNBase):
            module.input_size, module.hidden_size = module.weight_ih_l0.shape[1], module.weight_hh_l0.shape[1]


def load_network(weights: Path | str) -> tuple[RecognizerConfig, nn.Module]:
    """The configuration and network (float32, eval mode) of a weights file, pruned or not, or of the
    ``.onnx`` of an imported architecture (its initialisers are the weights)."""
    if Path(weights).suffix == ".onnx":
        from edgeocr.models.pretrained import load_exported

        network, cfg = load_exported(weights)
        return cfg, network.eval()
    try:
        cfg, state = load_weights(weights)
        pruned = False
    except ModelError:
        try:
            cfg, state = load_state(weights, RecognizerConfig, file_format=PRUNED_WEIGHTS_FORMAT)
        except ModelError:
            raise ModelError(
                f"{weights}: not an edgeocr recogniser weights file (plain or pruned) or training checkpoint"
            ) from None
        pruned = True
    network = build_from_config(cfg)
    if pruned:
        _fit_layers_to(network, state)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: its weights do not fit {cfg.arch} ({exc})") from exc
    return cfg, network.eval()


def has_factory_shapes(network: nn.Module, cfg: RecognizerConfig) -> bool:
    """Whether ``network`` has exactly the layer shapes the factory builds for ``cfg.arch``."""
    reference = build_from_config(cfg).state_dict()
    state = network.state_dict()
    return state.keys() == reference.keys() and all(state[k].shape == reference[k].shape for k in state)


def save_network(network: nn.Module, cfg: RecognizerConfig, path: Path) -> Path:
    """Write ``network``'s weights: the ordinary format when its shapes are the architecture's (so
    ``edgeocr finetune`` can start from it), else :data:`PRUNED_WEIGHTS_FORMAT`."""
    if has_factory_shapes(network, cfg):
        return save_weights(network, cfg, path)
    return save_state(network, cfg, path, file_format=PRUNED_WEIGHTS_FORMAT)


def count_macs(network: nn.Module, cfg: RecognizerConfig, width: int = 256) -> int:
    """Multiply-accumulates of one ``input_height`` x ``width`` line (convolutions, linear and recurrent layers).

    Counted from the shapes seen in one forward pass; batch norm, activations and pooling are left
    out (they are folded or negligible).
    """
    macs = 0

    def conv(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        macs += output.numel() * kernel

    def linear(module: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * module.in_features

    def recurrent(module: nn.RNNBase, inputs: tuple, _output: object) -> None:
        nonlocal macs
        steps = inputs[0].shape[1] if module.batch_first else inputs[0].shape[0]
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        directions = 2 if module.bidirectional else 1
        for layer in range(module.num_layers):
            layer_input = module.input_size if layer == 0 else module.hidden_size * directions
            macs += steps * directions * gates * (layer_input + module.hidden_size) * module.hidden_size

    hooks = []
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear))
        elif isinstance(module, nn.RNNBase):
            hooks.append(module.register_forward_hook(recurrent))
    was_training = network.training
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(1, 1, cfg.input_height, width))
    finally:
        network.train(was_training)
        for hook in hooks:
            hook.remove()
    return macs
