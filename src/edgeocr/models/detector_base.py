"""What every detector network shares: input sides that are multiples of its stride, checked in eager mode."""

from __future__ import annotations

import torch
from torch import nn


class StridedDetector(nn.Module):
    """A detector whose input height and width must be multiples of ``stride`` (its deepest feature map's)."""

    stride = 32

    def _check_size(self, x: torch.Tensor) -> None:
        # Not while exporting or tracing: the check would be baked into the graph as a constant.
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
                raise ValueError(f"input height and width must be multiples of {self.stride}, got {tuple(x.shape)}")
