"""Quantisation-aware fine-tuning (``edgeocr optimize --int8 --qat-steps N``), for when post-training
quantisation costs too much accuracy.

The float network (from the ``.pt`` weights beside the model) is prepared as ONNX Runtime will run it
and fine-tuned while seeing the int8 rounding:

1. batch norms are folded into their convolutions (eval statistics), as the ONNX export folds them, so
   the weights trained are the weights quantised;
2. every convolution and linear weight goes through a per-output-channel symmetric int8 fake quantiser
   (a parametrisation: the float weight is trained, the forward pass sees it rounded), and every
   convolution and linear input through a per-tensor int8 fake quantiser with moving-average ranges,
   the QDQ pairs of :mod:`.quantize`; gradients pass straight through the rounding;
3. ``steps`` steps of CTC training on synthetic lines at a low learning rate
   (:func:`edgeocr.optimize.short_training.train_network`);
4. the fake quantisers are removed, keeping the fine-tuned float weights, and the network is exported
   to ONNX; :mod:`.quantize` then quantises it (calibrated, behind the same accuracy gate), and its
   per-channel weight grid is the one the network was trained against.

LSTM weights are not fake-quantised (ONNX Runtime quantises them dynamically per tensor, a small
error; and torch's recurrent layers keep their own flattened copy of the weights, which a
parametrisation would bypass).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgeocr.core.errors import ModelError
from edgeocr.models.export import export_onnx

QAT_LR = 1e-4  # a tenth of training's peak: the weights only need to settle onto the int8 grid


def _weight_quantiser() -> FakeQuantize:
    return FakeQuantize(
        observer=MovingAveragePerChannelMinMaxObserver,
        quant_min=-127,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )


def _activation_quantiser() -> FakeQuantize:
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_tensor_affine,
    )


def fold_batch_norms(network: nn.Module) -> int:
    """Fold each ``Conv2d`` directly followed by a ``BatchNorm2d`` (in a Sequential) into the conv; returns how many."""
    folded = 0
    for module in network.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def add_fake_quantisers(network: nn.Module) -> list:
    """Fake-quantise conv/linear weights (parametrisations) and inputs (pre-hooks); returns the hook handles."""
    hooks = []
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            parametrize.register_parametrization(module, "weight", _weight_quantiser())
            quantiser = _activation_quantiser()
            module.add_module("input_quantiser", quantiser)
            hooks.append(module.register_forward_pre_hook(lambda mod, args: (mod.input_quantiser(args[0]),)))
    return hooks


def remove_fake_quantisers(network: nn.Module, hooks: list) -> None:
    """Back to a plain float network, keeping the fine-tuned weights."""
    for handle in hooks:
        handle.remove()
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            del module.input_quantiser


def qat_finetune(model: Path, out: Path, steps: int, *, batch_size: int = 32, seed: int = 0) -> tuple[Path, dict]:
    """Fine-tune ``model`` (its trainable weights) with fake int8 for ``steps`` steps; export the float result to
    ``out``."""
    from edgeocr.optimize.networks import load_network, resolve_trainable_model
    from edgeocr.optimize.short_training import ShortTrainingSettings, train_network

    try:
        _, weights = resolve_trainable_model(model)
    except ModelError as exc:
        raise ModelError(f"--qat-steps needs trainable weights: {exc}") from None
    cfg, network = load_network(weights)  # a model.pt, pruned or not, or an imported architecture's ONNX
    network.eval()
    folded = fold_batch_norms(network)
    hooks = add_fake_quantisers(network)
    settings = ShortTrainingSettings(steps=steps, batch_size=batch_size, seed=seed, lr=QAT_LR, val_lines=0)
    outcome = train_network(network, cfg, settings)
    remove_fake_quantisers(network, hooks)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = export_onnx(network.eval(), cfg, out)
    return path, {
        "steps": outcome.steps,
        "batch_size": batch_size,
        "lr": QAT_LR,
        "batch_norms_folded": folded,
        "wall_time_s": outcome.wall_time_s,
        "losses": outcome.losses,
    }
