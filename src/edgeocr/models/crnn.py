"""CRNN line recogniser: a conv backbone, a bidirectional recurrent sequence model and a CTC head.

Input ``[N, 1, H, W]`` (H = input_height, a multiple of 16, W a multiple of 4); output logits
``[N, W / 4, num_classes]``. The width is pooled only twice, so a 512 px line gives 128 frames:
CTC needs at least one frame per character plus one between repeated ones, and 40+ character
codes must fit with room to spare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

FRAME_STRIDE = 4  # input pixels per output frame


@dataclass(frozen=True)
class CRNNSpec:
    """Size hyperparameters of one CRNN variant."""

    channels: tuple[int, int, int, int]  # output channels of the four backbone stages
    rnn: Literal["lstm", "gru"]
    hidden_size: int  # per direction
    num_layers: int
    dropout: float = 0.1


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (no bias, BN follows), batch norm, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int] = (3, 3),
        padding: int | tuple[int, int] = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class CRNNBackbone(nn.Module):
    """Reduces ``[N, 1, H, W]`` to a feature sequence ``[N, W / 4, C]``.

    Height is halved four times, then a conv whose kernel spans the remaining rows collapses it
    to one row (learned, unlike a mean, so it can weigh the character's top and bottom). Width
    is halved only in the first two stages.
    """

    def __init__(self, input_height: int, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        if input_height % 16:
            raise ValueError(f"input_height must be a multiple of 16, got {input_height}")
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            ConvBNReLU(1, c1),
            nn.MaxPool2d(2, 2),  # H/2, W/2
            ConvBNReLU(c1, c2),
            nn.MaxPool2d(2, 2),  # H/4, W/4
            ConvBNReLU(c2, c3),
            ConvBNReLU(c3, c3),
            nn.MaxPool2d((2, 1), (2, 1)),  # H/8
            ConvBNReLU(c3, c4),
            ConvBNReLU(c4, c4),
            nn.MaxPool2d((2, 1), (2, 1)),  # H/16
            ConvBNReLU(c4, c4, kernel_size=(input_height // 16, 1), padding=0),  # one row
        )
        self.out_channels = c4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)  # [N, C, 1, W/4]
        return features.squeeze(2).transpose(1, 2)  # [N, W/4, C]


class CRNN(nn.Module):
    """Conv backbone + bidirectional LSTM/GRU + linear CTC head; returns logits ``[N, T, C]``."""

    frame_stride = FRAME_STRIDE

    def __init__(self, num_classes: int, input_height: int, spec: CRNNSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = CRNNBackbone(input_height, spec.channels)
        rnn_type = nn.LSTM if spec.rnn == "lstm" else nn.GRU
        self.sequence = rnn_type(
            input_size=self.backbone.out_channels,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(2 * spec.hidden_size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        context, _ = self.sequence(features)
        return self.head(self.dropout(context))
