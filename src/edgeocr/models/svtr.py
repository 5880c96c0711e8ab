"""SVTR-like line recogniser: conv patch embedding, transformer encoder blocks, CTC head.

Input ``[N, 1, H, W]`` (H a multiple of 16, W a multiple of 4); output logits ``[N, W / 4, C]``.
The conv embedding reduces the image to 2 rows (H / 16) of W / 4 columns; the transformer mixes
all those tokens globally; a conv spanning the rows then collapses them to one frame per column.

Position is given by a depthwise-conv positional encoding in every block (as in CPVT's PEG), not
by a learned table: it works for any width, including widths never seen in training, and
exports to ONNX with a dynamic width without interpolation tricks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

FRAME_STRIDE = 4  # input pixels per output frame


@dataclass(frozen=True)
class SVTRSpec:
    """Size hyperparameters of one SVTR-like variant."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.1


class ConvBNGELU(nn.Sequential):
    """Convolution (no bias, BN follows), batch norm, GELU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.GELU(),
        )


class PatchEmbedding(nn.Module):
    """``[N, 1, H, W]`` -> ``[N, D, H/16, W/4]`` with four strided 3x3 convs."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        half = max(embed_dim // 2, 1)
        self.layers = nn.Sequential(
            ConvBNGELU(1, half, (3, 3), (2, 2), (1, 1)),  # H/2, W/2
            ConvBNGELU(half, embed_dim, (3, 3), (2, 2), (1, 1)),  # H/4, W/4
            ConvBNGELU(embed_dim, embed_dim, (3, 3), (2, 1), (1, 1)),  # H/8
            ConvBNGELU(embed_dim, embed_dim, (3, 3), (2, 1), (1, 1)),  # H/16
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class SelfAttention(nn.Module):
    """Multi-head self-attention written with plain matmuls (exports to any ONNX opset >= 13)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]  # [N, heads, L, head_dim]
        weights = torch.softmax((query * self.scale) @ key.transpose(-2, -1), dim=-1)
        mixed = (self.dropout(weights) @ value).transpose(1, 2).reshape(batch, length, dim)
        return self.proj(mixed)


class EncoderBlock(nn.Module):
    """Conv positional encoding, then pre-norm attention and MLP, on a ``[N, D, rows, cols]`` map."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        batch, dim, rows, cols = feature_map.shape
        feature_map = feature_map + self.position(feature_map)
        tokens = feature_map.flatten(2).transpose(1, 2)  # [N, rows*cols, D]
        tokens = tokens + self.dropout(self.attention(self.norm1(tokens)))
        tokens = tokens + self.dropout(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(batch, dim, rows, cols)


class SVTR(nn.Module):
    """SVTR-like recogniser; returns CTC logits ``[N, W / 4, num_classes]``."""

    frame_stride = FRAME_STRIDE

    def __init__(self, num_classes: int, input_height: int, spec: SVTRSpec) -> None:
        super().__init__()
        if input_height % 16:
            raise ValueError(f"input_height must be a multiple of 16, got {input_height}")
        self.spec = spec
        dim = spec.embed_dim
        self.embedding = PatchEmbedding(dim)
        self.blocks = nn.Sequential(
            *(EncoderBlock(dim, spec.num_heads, spec.mlp_ratio, spec.dropout) for _ in range(spec.depth))
        )
        # Collapse the remaining rows into one frame per column.
        self.collapse = ConvBNGELU(dim, dim, (input_height // 16, 1), (1, 1), (0, 0))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.blocks(self.embedding(images))
        frames = self.collapse(feature_map).squeeze(2).transpose(1, 2)  # [N, W/4, D]
        return self.head(self.dropout(self.norm(frames)))
