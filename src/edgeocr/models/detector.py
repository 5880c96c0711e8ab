"""A small DB-style text-line detector: inverted-residual backbone, FPN-lite neck, DB head.

Input ``[N, 3, H, W]`` (normalised BGR, H and W multiples of 32); output the probability
``[N, 1, H, W]`` that each pixel lies in the shrunk core of a text line.

* Backbone: a stride-2 stem, then four stages of MobileNetV2/V3-style inverted residual blocks
  (1x1 expand, depthwise kxk, 1x1 project) ending at strides 4, 8, 16 and 32. Plain ReLU and
  no squeeze-excitation: both cost latency on CPUs and int8 runtimes for little gain at this
  size. Deeper stages use 5x5 depthwise kernels: a long code line spans hundreds of pixels and
  the gaps between its words must still read as "inside the line".
* Neck: 1x1 laterals to one width, top-down nearest-upsample-and-add, a depthwise-separable
  3x3 smoothing per level to a quarter of that width, all upsampled to stride 4 and
  concatenated (the DBNet neck with depthwise convolutions).
* Heads: the DB probability head (depthwise-separable 3x3, two 2x transposed convolutions back
  to full resolution) and, for training only, a threshold head of the same shape. Full
  resolution matters for small print: a 10 px line shrinks to a 2 px core.

Differentiable binarisation itself (``1 / (1 + exp(-k (P - T)))``) lives in the loss
(:mod:`edgeocr.train.detector_trainer`); inference uses the probability map alone. The
architecture name fixes every size, so ``DetectorConfig.arch`` rebuilds the same network.
``db_tiny`` exists for fast tests only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeocr.core.detector_config import DetectorConfig
from edgeocr.models.detector_base import StridedDetector
from edgeocr.models.ppocr_detector import PPOCR_DETECTORS, build_ppocr_detector

STRIDE = 32  # input sides must be multiples of this


@dataclass(frozen=True)
class StageSpec:
    """One backbone stage: its output channels, block count, expansion factor and depthwise kernel."""

    channels: int
    blocks: int
    expansion: int
    kernel: int
    first_expansion: int | None = None  # of the stride-2 block, which expands at the finer resolution


@dataclass(frozen=True)
class DetectorSpec:
    """Size hyperparameters of one detector variant."""

    stem: int
    stages: tuple[StageSpec, StageSpec, StageSpec, StageSpec]  # strides 4, 8, 16, 32
    neck: int  # lateral width; the fused stride-4 features have this many channels too


_SPECS: dict[str, DetectorSpec] = {
    "db_tiny": DetectorSpec(
        stem=8,
        stages=(StageSpec(8, 1, 2, 3), StageSpec(16, 1, 2, 3), StageSpec(16, 1, 2, 3), StageSpec(24, 1, 2, 3)),
        neck=16,
    ),
    "db_s": DetectorSpec(
        stem=16,
        stages=(
            StageSpec(24, 2, 2, 3, first_expansion=1),
            StageSpec(32, 2, 3, 5),
            StageSpec(64, 3, 3, 5),
            StageSpec(96, 2, 4, 5),
        ),
        neck=48,
    ),
}

# Non-default DetectorConfig values per architecture. PP-OCR's: its own normalisation (BGR, mean and std
# 0.5), DB shrink ratio 0.4, thresholds 0.3 / 0.5 and DB's fixed unclip ratio 1.6, as RapidOCR runs it;
# the long side (its speed and its reach for small print) is chosen on synthetic scenes
# (docs/models/detector-ppocrv6.md).
_PPOCR_DEFAULTS: dict[str, Any] = {
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "shrink_ratio": 0.4,
    "binary_threshold": 0.3,
    "box_threshold": 0.5,
    "unclip_ratio": 1.6,
    "max_side": 960,
}
_DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {
    "ppocrv6_det_small": _PPOCR_DEFAULTS,
    "ppocrv4_det_mobile": _PPOCR_DEFAULTS,
}


class ConvBNReLU(nn.Sequential):
    """Convolution (no bias, BN follows), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise kxk (carrying the stride), 1x1 linear projection; residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, kernel: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [ConvBNReLU(in_channels, hidden, 1)] if expansion > 1 else []
        layers += [
            ConvBNReLU(hidden, hidden, kernel, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class Backbone(nn.Module):
    """Features at strides 4, 8, 16 and 32."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, spec.stem, 3, stride=2)
        stages, channels = [], spec.stem
        for stage in spec.stages:
            blocks = []
            for i in range(stage.blocks):
                expansion = (stage.first_expansion or stage.expansion) if i == 0 else stage.expansion
                blocks.append(InvertedResidual(channels, stage.channels, 2 if i == 0 else 1, expansion, stage.kernel))
                channels = stage.channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(stage.channels for stage in spec.stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class FPNLite(nn.Module):
    """Top-down feature pyramid fused at stride 4 into ``width`` channels."""

    def __init__(self, in_channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        if width % 4:
            raise ValueError(f"the neck width must be a multiple of 4, got {width}")
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False), ConvBNReLU(width, width // 4, 1)
            )
            for _ in in_channels
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.laterals, features, strict=True)]
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], scale_factor=2.0, mode="nearest")
        levels = [smooth(x) for smooth, x in zip(self.smooth, laterals, strict=True)]
        levels = [levels[0]] + [
            F.interpolate(x, scale_factor=float(2**i), mode="nearest") for i, x in enumerate(levels[1:], start=1)
        ]
        return torch.cat(levels, dim=1)


class DBHead(nn.Module):
    """Stride-4 features to one full-resolution map (logits): separable 3x3, two 2x transposed convs."""

    def __init__(self, width: int, bias: float = 0.0) -> None:
        super().__init__()
        inner = width // 4
        self.layers = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
            ConvBNReLU(width, inner, 1),
            nn.ConvTranspose2d(inner, inner, 2, 2, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(inner, 1, 2, 2),
        )
        nn.init.constant_(self.layers[-1].bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DBNet(StridedDetector):
    """The detector. ``forward`` gives probabilities (what is exported); ``forward_train`` gives the
    probability logits and the threshold map the DB loss needs."""

    stride = STRIDE

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = Backbone(spec)
        self.neck = FPNLite(self.backbone.out_channels, spec.neck)
        # Text covers a small share of a scene: start the probability head near that prior.
        self.prob_head = DBHead(spec.neck, bias=math.log(0.05 / 0.95))
        self.thresh_head = DBHead(spec.neck)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Core probabilities ``[N, 1, H, W]`` of images ``[N, 3, H, W]``."""
        self._check_size(images)
        return torch.sigmoid(self.prob_head(self.neck(self.backbone(images))))

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probability logits, threshold map in [0, 1]), both ``[N, 1, H, W]``."""
        self._check_size(images)
        features = self.neck(self.backbone(images))
        return self.prob_head(features), torch.sigmoid(self.thresh_head(features))


def detector_architectures() -> tuple[str, ...]:
    """Names accepted by :func:`build_detector`, sorted."""
    return tuple(sorted((*_SPECS, *PPOCR_DETECTORS)))


def _check_arch(arch: str) -> None:
    if arch not in detector_architectures():
        raise ValueError(f"unknown detector architecture {arch!r}; choose one of {', '.join(detector_architectures())}")


def default_detector_config(arch: str = "db_s", **overrides: Any) -> DetectorConfig:
    """The default :class:`DetectorConfig` of ``arch``, with ``overrides`` of its fields applied."""
    _check_arch(arch)
    return DetectorConfig(**{**_DEFAULT_OVERRIDES.get(arch, {}), **overrides, "arch": arch})


def build_detector(arch: str | DetectorConfig = "db_s") -> nn.Module:
    """A freshly initialised detector for an architecture name or a :class:`DetectorConfig`: a :class:`DBNet`,
    or for an imported architecture a :class:`~edgeocr.models.ppocr_detector.PPOCRDetector` (same interface)."""
    name = arch.arch if isinstance(arch, DetectorConfig) else arch
    _check_arch(name)
    if name in PPOCR_DETECTORS:  # PP-OCR's imported detectors, built from the rapidocr package
        model: nn.Module = build_ppocr_detector(name)
    else:
        model = DBNet(_SPECS[name])
    if isinstance(arch, DetectorConfig) and arch.size_multiple % model.stride:
        raise ValueError(f"{name} needs size_multiple to be a multiple of {model.stride}, got {arch.size_multiple}")
    return model
