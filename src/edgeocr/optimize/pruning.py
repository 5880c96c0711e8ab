"""Prune an exported recogniser: unstructured magnitude pruning or structured channel pruning.

Both start from the trainable weights beside the model (``model.pt``), never change the source
files, and write ``model.onnx`` + sidecar + ``model.pt`` + ``prune_stats.json`` into a new folder.

* ``magnitude``: global unstructured L1 pruning (``torch.nn.utils.prune``) of every convolution,
  linear and recurrent weight matrix to ``ratio`` zeros, an optional fine-tune that keeps the mask,
  then the mask is made permanent. The zeros are stored and multiplied like any other weight:
  ONNX Runtime's dense kernels run no faster, so **no speed gain is claimed**; what it buys is a
  smaller *compressed* file (zeros deflate well), reported as ``compressed_bytes``.
* ``structured``: torch-pruning removes ``ratio`` of the output channels of the convolution
  backbone (L1 magnitude importance over each dependency group: a conv, its batch norm and the
  next conv's inputs go together; counts rounded to ``channel_multiple`` for the CPU kernels),
  then a fine-tune on synthetic lines recovers accuracy. The network really shrinks, so it runs
  faster. The recurrent layers keep their hidden size and the CTC head its outputs (the charset):
  torch-pruning 1.6's LSTM pruner cuts hidden units of single-layer LSTMs only (it asserts
  ``num_layers == 1``; ``crnn_m`` has two) and, reading its code, indexes the four gate blocks of
  the hidden weights wrongly; it has no GRU support at all. What it does handle correctly is an
  LSTM's *inputs* (the first layer's input columns, both directions), so with an LSTM the last
  conv's channels are pruned too, together with those columns; with a GRU the last conv stays
  whole. PP-OCR (``ppocrv6_small``, ``accurate``) loses hidden channels of its backbone's channel
  mixers only (:func:`_prune_ppocr_channels`). Our SVTR's attention blocks are not handled.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from edgeocr.core.atomic import atomic_output_dir, atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError, ModelError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.core.sidecar import sidecar_path
from edgeocr.models.crnn import CRNN
from edgeocr.models.export import export_onnx
from edgeocr.models.ppocr import PPOCRRecognizer  # its layers come from rapidocr only when one is built
from edgeocr.models.weights import weights_path
from edgeocr.optimize.networks import (
    check_output_dir,
    count_macs,
    load_network,
    resolve_trainable_model,
    save_network,
)
from edgeocr.optimize.short_training import ShortTrainingSettings, held_out_lines, score_network, train_network
from edgeocr.train.module import FrozenTeacher

METHODS = ("magnitude", "structured")
MODEL_FILE = "model.onnx"
STATS_FILE = "prune_stats.json"
DEFAULT_CHANNEL_MULTIPLE = 8  # kept channel counts are multiples of this (SIMD-friendly conv blocks)
MACS_WIDTH = 256  # line width (px) at which multiply-accumulates are counted
FINETUNE_LR = 5e-4  # starting from trained weights: a third of the default model's peak training rate
NO_SPEED_CLAIM = (
    "unstructured zeros are stored and computed densely (ONNX Runtime has no sparse kernels for "
    "these layers): no speed gain is claimed; the gain is the compressed size"
)


@dataclass(frozen=True)
class PruneResult:
    """The pruned model and its figures (``stats``, also written to ``prune_stats.json`` beside it)."""

    onnx_path: Path
    stats: dict[str, Any]


def compressed_size(data: bytes) -> int:
    """Bytes of ``data`` deflated at level 9 (what zip and gzip store, less their headers)."""
    return len(zlib.compress(data, 9))


def _magnitude_targets(network: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) of every convolution, linear and recurrent weight matrix."""
    targets: list[tuple[nn.Module, str]] = []
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            targets.append((module, "weight"))
        elif isinstance(module, nn.RNNBase):
            targets += [
                (module, name) for name, _ in module.named_parameters(recurse=False) if name.startswith("weight_")
            ]
    return targets


def _weight_sparsity(network: nn.Module) -> dict[str, Any]:
    """Share of zeros in the prunable weight matrices (overall and per matrix) and in all parameters."""
    names = {module: name for name, module in network.named_modules()}
    per_weight: dict[str, float] = {}
    zeros = total = 0
    for module, name in _magnitude_targets(network):
        weight = getattr(module, name)
        count = int((weight == 0).sum())
        per_weight[f"{names[module]}.{name}"] = round(count / weight.numel(), 4)
        zeros, total = zeros + count, total + weight.numel()
    parameters = list(network.parameters())
    all_zeros = sum(int((p == 0).sum()) for p in parameters)
    return {
        "sparsity": round(zeros / total, 6) if total else 0.0,
        "sparsity_all_parameters": round(all_zeros / sum(p.numel() for p in parameters), 6),
        "sparsity_per_weight": per_weight,
    }


def _onnx_sparsity(data: bytes) -> float:
    """Share of zeros in the exported model's weight tensors (initialisers of 2 or more dimensions)."""
    import onnx
    from onnx import numpy_helper

    arrays = [numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer]
    weights = [a for a in arrays if a.ndim >= 2 and a.dtype.kind == "f"]
    total = sum(a.size for a in weights)
    return round(sum(int((a == 0).sum()) for a in weights) / total, 6) if total else 0.0


def mask_smallest_weights(network: nn.Module, ratio: float) -> list[tuple[nn.Module, str]]:
    """Mask ``ratio`` of all prunable weights, smallest |w| first across layers; returns the masked weights.

    The masks stay as reparametrisations (``weight = weight_orig * weight_mask``) so that fine-tuning
    keeps pruned weights at zero; :func:`make_masks_permanent` bakes them in.
    """
    targets = _magnitude_targets(network)
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=ratio)
    return targets


def make_masks_permanent(targets: list[tuple[nn.Module, str]]) -> None:
    """Replace each masked weight by its masked value (zeros included) as a plain parameter."""
    for module, name in targets:
        torch_prune.remove(module, name)


def _torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError as exc:
        raise EdgeOCRError(f"structured pruning needs torch-pruning: pip install 'edgeocr[optimize]' ({exc})") from exc
    return torch_pruning


def _check_channel_pruning(network: nn.Module, cfg: RecognizerConfig) -> Any:
    """torch_pruning, after checking that it is installed and that ``network`` is a CRNN or PP-OCR."""
    if not isinstance(network, (CRNN, PPOCRRecognizer)):
        raise ModelError(
            f"structured pruning supports the CRNN family (crnn_*) and PP-OCR (ppocrv6_small) only, not {cfg.arch}"
        )
    return _torch_pruning()


def _prune_ppocr_channels(tp: Any, network: nn.Module, cfg: RecognizerConfig, ratio: float, multiple: int) -> str:
    """Remove ``ratio`` of the hidden channels of every channel mixer (1x1 expand, GELU, 1x1 compress) of
    PP-OCR's backbone: the expand convolution's outputs with the compress convolution's inputs.

    These are the backbone's widest layers and most of its multiply-accumulates, and nothing else reads
    them: the residual trunk, the depthwise token mixers, their squeeze-excitation, the stem, the SVTR
    neck and the CTC head keep every channel, so the pretrained structure is cut where it is least coupled."""
    expands = [m for name, m in network.named_modules() if name.endswith("channel_mixer.expand")]
    if not expands:
        raise ModelError(f"{cfg.arch}: no channel mixers found to prune")
    ignored = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in expands]
    example = torch.zeros(1, 1, cfg.input_height, 8 * cfg.width_multiple)
    tp.pruner.MetaPruner(
        network,
        example,
        ignored_layers=[*ignored, network.encoder, network.fc],
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        round_to=multiple,
    ).step()
    return "hidden channels of every backbone channel mixer (1x1 expand outputs with the 1x1 compress inputs); " + (
        "stem, residual trunk, depthwise mixers, SVTR neck and CTC head unchanged"
    )


def prune_channels(network: nn.Module, cfg: RecognizerConfig, ratio: float, channel_multiple: int) -> dict[str, Any]:
    """Remove ``ratio`` of the backbone's conv channels in place (see the module docstring for what is kept)."""
    tp = _check_channel_pruning(network, cfg)
    convs = [(name, module) for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]
    before = [module.out_channels for _, module in convs]
    if isinstance(network, PPOCRRecognizer):
        pruned = _prune_ppocr_channels(tp, network, cfg, ratio, channel_multiple)
        return {
            "pruned": pruned,
            "channel_multiple": channel_multiple,
            "channels": {
                name: [b, module.out_channels]
                for (name, module), b in zip(convs, before, strict=True)
                if b != module.out_channels
            },
        }
    example = torch.zeros(1, 1, cfg.input_height, 4 * cfg.width_multiple)
    if isinstance(network.sequence, nn.LSTM):
        # The whole network is traced: the last conv's channels go with the LSTM's input columns.
        # The LSTM (its hidden units) and the head are never pruning roots.
        root, ignored, pruned = (
            network,
            [network.sequence, network.head],
            ("every conv's output channels, with the LSTM's input columns; LSTM hidden size and CTC head unchanged"),
        )
    else:
        # torch-pruning cannot follow a GRU: prune inside the backbone, keeping the channels it hands on.
        root, ignored, pruned = (
            network.backbone,
            [convs[-1][1]],
            ("conv output channels except the last conv's (they feed the GRU); GRU and CTC head unchanged"),
        )
    pruner = tp.pruner.MetaPruner(
        root,
        example,
        ignored_layers=ignored,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        round_to=channel_multiple,
    )
    pruner.step()
    return {
        "pruned": pruned,
        "channel_multiple": channel_multiple,
        "channels": {name: [b, module.out_channels] for (name, module), b in zip(convs, before, strict=True)},
        "sequence_input_size": [before[-1], network.sequence.input_size],
    }


def _parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def prune(
    model: Path,
    ratio: float,
    method: str,
    out_dir: Path,
    *,
    finetune_steps: int = 300,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = FINETUNE_LR,
    channel_multiple: int = DEFAULT_CHANNEL_MULTIPLE,
    recovery_kl_weight: float = 0.0,
    val_lines: int = 500,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> PruneResult:
    """Prune ``model`` (an ``.onnx`` with sidecar and ``.pt`` beside it, or a shipped name) into ``out_dir``.

    ``method`` 'magnitude' or 'structured' (see the module docstring); ``ratio`` in (0, 1) is the share
    of weights zeroed or of channels removed; ``finetune_steps`` steps of ``batch_size`` synthetic lines
    at learning rate ``lr`` follow (0: none); with ``recovery_kl_weight > 0`` the unpruned network is their
    teacher (CTC + that weight times the frame KL, as in :mod:`edgeocr.optimize.distill`). ``val_lines``
    held-out synthetic lines (seed + 1000003)
    score the source, the pruned and the fine-tuned network alike. ``stats``:

    * ``sparsity``: share of exact zeros in the conv/linear/recurrent weight matrices (structured
      pruning removes channels instead of zeroing them: near 0 there, see ``params_removed``);
    * ``params_before/after``, ``macs_before/after`` (per 256 px line), ``onnx_bytes_before/after``,
      ``compressed_bytes_before/after`` (deflate level 9, as zip/gzip store it);
    * ``held_out``: accuracy of the source, right after pruning, and after fine-tuning.

    Raises :class:`EdgeOCRError` for a bad ratio or method, :class:`ModelError` for a model without
    sidecar or weights, :class:`OutputError` for an ``out_dir`` that holds the source model or
    (without ``overwrite``) already holds files.
    """
    if method not in METHODS:
        raise EdgeOCRError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < ratio < 1:
        raise EdgeOCRError(f"the pruning ratio must be between 0 and 1 (exclusive), got {ratio}")
    if finetune_steps < 0 or batch_size < 1 or channel_multiple < 1 or recovery_kl_weight < 0:
        raise EdgeOCRError(
            "finetune_steps and recovery_kl_weight must be >= 0, batch_size and channel_multiple "
            f">= 1; got {finetune_steps}, {recovery_kl_weight}, {batch_size} and {channel_multiple}"
        )
    onnx_path, weights = resolve_trainable_model(model)
    out = check_output_dir(out_dir, [onnx_path, weights, sidecar_path(onnx_path)], overwrite)
    cfg, network = load_network(weights)
    if method == "structured":
        _check_channel_pruning(network, cfg)  # before any work
    settings = ShortTrainingSettings(
        steps=finetune_steps,
        batch_size=batch_size,
        seed=seed,
        lr=lr,
        kl_weight=recovery_kl_weight,
        val_lines=val_lines,
        workers=workers,
        progress=progress,
    )
    source = onnx_path.read_bytes()
    params_before, macs_before = _parameter_count(network), count_macs(network, cfg, MACS_WIDTH)
    val_set = held_out_lines(cfg, settings)
    held_out = {"source": score_network(network, cfg, settings, val_set)}

    masked: list[tuple[nn.Module, str]] = []
    details: dict[str, Any] = {}
    if method == "magnitude":
        masked = mask_smallest_weights(network, ratio)
        details["speed"] = NO_SPEED_CLAIM
    else:
        details = prune_channels(network, cfg, ratio, channel_multiple)
    if finetune_steps:
        held_out["pruned"] = score_network(network, cfg, settings, val_set)
    # The unpruned network, loaded afresh, teaches the pruned one when asked to.
    teacher = FrozenTeacher(load_network(weights)[1]) if recovery_kl_weight > 0 else None
    outcome = train_network(network, cfg, settings, teacher, val_set)
    held_out["final"] = outcome.held_out
    make_masks_permanent(masked)

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        exported = export_onnx(network, cfg, tmp / MODEL_FILE)
        save_network(network, cfg, weights_path(exported))
        data = exported.read_bytes()
        params_after = _parameter_count(network)
        stats: dict[str, Any] = {
            "method": method,
            "ratio": ratio,
            "source": str(onnx_path),
            "arch": cfg.arch,
            **_weight_sparsity(network),
            "onnx_sparsity": _onnx_sparsity(data),
            "params_before": params_before,
            "params_after": params_after,
            "nonzero_params_after": sum(int((p != 0).sum()) for p in network.parameters()),
            "params_removed": round(1 - params_after / params_before, 6),
            "macs_before": macs_before,
            "macs_after": count_macs(network, cfg, MACS_WIDTH),
            "macs_width_px": MACS_WIDTH,
            "onnx_bytes_before": len(source),
            "onnx_bytes_after": len(data),
            "compressed_bytes_before": compressed_size(source),
            "compressed_bytes_after": compressed_size(data),
            "finetune_steps": outcome.steps,
            "finetune_batch_size": batch_size,
            "finetune_lr": lr,
            "seed": seed,
            "recovery_kl_weight": recovery_kl_weight,
            "finetune_wall_time_s": outcome.wall_time_s,
            "finetune_losses": outcome.losses,
            "held_out": held_out,
            **details,
        }
        atomic_write_bytes(tmp / STATS_FILE, (json.dumps(stats, indent=1) + "\n").encode("utf-8"))
    return PruneResult(onnx_path=out / MODEL_FILE, stats=stats)
