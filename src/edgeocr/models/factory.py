"""Build a recogniser network and its configuration from an architecture name.

The architecture name fixes every size hyperparameter, so ``RecognizerConfig.arch`` (stored in
checkpoints and sidecars) is enough to rebuild the same network. ``*_tiny`` variants exist for
fast tests only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from edgeocr.core.charset import DEFAULT_CHARSET, Charset
from edgeocr.models.config import RecognizerConfig
from edgeocr.models.crnn import CRNN, CRNNSpec
from edgeocr.models.svtr import SVTR, SVTRSpec

_CRNN_SPECS: dict[str, CRNNSpec] = {
    "crnn_tiny": CRNNSpec(channels=(4, 8, 8, 8), rnn="gru", hidden_size=8, num_layers=1),
    # The small size uses one GRU layer: cheapest sequence model that still sees both directions.
    "crnn_s": CRNNSpec(channels=(16, 32, 64, 96), rnn="gru", hidden_size=64, num_layers=1),
    "crnn_m": CRNNSpec(channels=(32, 64, 96, 128), rnn="lstm", hidden_size=128, num_layers=2),
    "crnn_l": CRNNSpec(channels=(64, 128, 256, 256), rnn="lstm", hidden_size=192, num_layers=2),
}

_SVTR_SPECS: dict[str, SVTRSpec] = {
    "svtr_tiny": SVTRSpec(embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0),
    "svtr_s": SVTRSpec(embed_dim=128, depth=6, num_heads=4, mlp_ratio=4.0),
}

# Imported architectures: networks of pretrained recognisers, built from their packages' code
# (edgeocr.models.ppocr) and loaded with their weights by edgeocr.models.pretrained.
_IMPORTED = ("ppocrv6_small",)

# Non-default configuration values per architecture. PP-OCR reads 48 px lines at 8 px per frame;
# its widest realdev line (a document line) is 1664 px at that height, and attention sees the
# whole line, so lines are squashed only past 1600 px.
_DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {
    "ppocrv6_small": {"input_height": 48, "frame_stride": 8, "width_multiple": 8, "max_width": 1600},
    # EasyOCR reads 64 px lines (4 px per frame); 2048 px is the same 32:1 line as PP-OCR's 1600 at 48 px.
    "easyocr_g2": {"input_height": 64, "frame_stride": 4, "width_multiple": 8, "max_width": 2048},
}


def _build_crnn(cfg: RecognizerConfig) -> nn.Module:
    return CRNN(cfg.num_classes, cfg.input_height, _CRNN_SPECS[cfg.arch])


def _build_svtr(cfg: RecognizerConfig) -> nn.Module:
    return SVTR(cfg.num_classes, cfg.input_height, _SVTR_SPECS[cfg.arch])


def _build_ppocr(cfg: RecognizerConfig) -> nn.Module:
    from edgeocr.models.ppocr import PPOCRRecognizer  # needs the rapidocr package (train extra)

    return PPOCRRecognizer(cfg.num_classes, cfg.input_height)


def _build_easyocr(cfg: RecognizerConfig) -> nn.Module:
    from edgeocr.models.easyocr import EasyOCRRecognizer  # needs the easyocr package (make peers)

    return EasyOCRRecognizer(cfg.num_classes, cfg.input_height)


_BUILDERS: dict[str, Callable[[RecognizerConfig], nn.Module]] = {
    **{name: _build_crnn for name in _CRNN_SPECS},
    **{name: _build_svtr for name in _SVTR_SPECS},
    **{name: _build_ppocr for name in _IMPORTED},
    # EasyOCR's network is imported too, but its LSTMs export as fused ONNX weights, so it is not in
    # _IMPORTED: like our CRNNs, its fine-tuning weights travel as model.pt beside the ONNX.
    "easyocr_g2": _build_easyocr,
}


def is_imported(arch: str) -> bool:
    """True for the imported architectures whose exported ONNX keeps every parameter under its
    ``state_dict`` name, so that the ``.onnx`` is their fine-tuning weights (PP-OCR)."""
    return arch in _IMPORTED


def available_architectures() -> tuple[str, ...]:
    """Names accepted by :func:`build_recognizer`, sorted."""
    return tuple(sorted(_BUILDERS))


def _check_arch(arch: str) -> None:
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(available_architectures())}")


def default_config(arch: str, charset: Charset | str = DEFAULT_CHARSET, **overrides: Any) -> RecognizerConfig:
    """The default :class:`RecognizerConfig` of ``arch``, with ``overrides`` of its fields applied."""
    _check_arch(arch)
    chars = charset.chars if isinstance(charset, Charset) else charset
    values = {**_DEFAULT_OVERRIDES.get(arch, {}), **overrides, "arch": arch, "charset": chars}
    return RecognizerConfig(**values)


def build_from_config(cfg: RecognizerConfig) -> nn.Module:
    """A freshly initialised network for ``cfg`` (weights are loaded by the caller)."""
    _check_arch(cfg.arch)
    model = _BUILDERS[cfg.arch](cfg)
    if model.frame_stride != cfg.frame_stride:
        raise ValueError(f"{cfg.arch} has frame_stride {model.frame_stride} but the config says {cfg.frame_stride}")
    return model


def build_recognizer(
    arch: str, charset: Charset | str = DEFAULT_CHARSET, **overrides: Any
) -> tuple[nn.Module, RecognizerConfig]:
    """Build ``arch`` for ``charset``; ``overrides`` replace fields of its default config."""
    cfg = default_config(arch, charset, **overrides)
    return build_from_config(cfg), cfg


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
