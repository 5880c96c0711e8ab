"""PP-OCR's recognisers as plain ``nn.Module``s, built from RapidOCR's own PyTorch network code.

The layers come from the installed ``rapidocr`` package (Apache-2.0, the ``train`` extra), used as
a dependency and never copied. PP-OCRv6 small ships as a deploy-form ONNX file (batch norms fused
into its backbone convolutions), so the network here is that deploy form, built by
``backbone.rep()``: the weights of the file load one to one (see :mod:`edgeocr.models.pretrained`)
and fine-tuning trains plain convolutions with biases.

Two changes make it one of ours:

* **Gray input.** Our pipeline prepares lines as one gray channel normalised with mean 0.5 and std
  0.5, as PP-OCR normalises each colour channel. The stem's first convolution reads one channel:
  its weights are the source's summed over the three colour channels, so a gray line gives
  exactly the source's output for that line repeated on B, G and R (measured on realdev: gray
  costs 0.3 to 0.7 points of relaxed accuracy against colour, before any fine-tuning).
* **One CTC head, our charset.** ``forward`` returns the CTC logits ``[N, W / 8, C]`` in training
  and in inference alike: RapidOCR's ``MultiHead`` calls a head it never builds in training
  mode, and its backbone pools to a fixed 40 frames in training mode, so this module runs the
  pieces itself with the inference pooling (``T = W / 8`` for every width).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from edgeocr.core.errors import EdgeOCRError

RAPIDOCR_NETWORKS = "rapidocr.inference_engine.pytorch.networks.architectures.base_model"
EXTRA_HINT = "pip install torch==2.13.0 && pip install 'edgeocr[train]'"


@dataclass(frozen=True)
class PPOCRSpec:
    """The RapidOCR architecture of one PP-OCR recogniser (``arch_config.yaml``'s entry, as a literal)."""

    backbone: str
    model_size: str
    neck_dims: int
    neck_depth: int
    mlp_ratio: float
    local_kernel: int
    source_classes: int  # classes of the source head: blank + dictionary + space

    def rapidocr_config(self, num_classes: int) -> dict[str, Any]:
        return {
            "model_type": "rec",
            "algorithm": "SVTR_LCNet",
            "Transform": None,
            "Backbone": {"name": self.backbone, "model_size": self.model_size},
            "Head": {
                "name": "MultiHead",
                "out_channels_list": {"CTCLabelDecode": num_classes},
                "head_list": [
                    {
                        "CTCHead": {
                            "Neck": {
                                "name": "lightsvtr",
                                "dims": self.neck_dims,
                                "depth": self.neck_depth,
                                "mlp_ratio": self.mlp_ratio,
                                "local_kernel": self.local_kernel,
                            },
                            "Head": {"fc_decay": 0.00001},
                        }
                    },
                    {"NRTRHead": {"nrtr_dim": 384, "max_text_length": 25}},
                ],
            },
        }


PPOCRV6_SMALL = PPOCRSpec(
    backbone="PPLCNetV4",
    model_size="small",
    neck_dims=120,
    neck_depth=2,
    mlp_ratio=2.0,
    local_kernel=7,
    source_classes=18710,
)


def rapidocr_base_model() -> type[nn.Module]:
    """RapidOCR's ``BaseModel`` class; a clear error naming the extra when ``rapidocr`` is missing."""
    try:
        module = importlib.import_module(RAPIDOCR_NETWORKS)
    except ModuleNotFoundError as exc:
        raise EdgeOCRError(
            f"the PP-OCR architectures need the rapidocr package of the 'train' extra "
            f"(missing: {exc.name}): {EXTRA_HINT}"
        ) from None
    return module.BaseModel


class SamePadConv2d(nn.Conv2d):
    """A stride-1 convolution with an even kernel padded as Paddle's and ONNX's ``SAME_UPPER``: the extra
    row and column go right and bottom. Explicit, because PyTorch's ``padding='same'`` copies the
    input for even kernels on every call (and warns each time)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        x = F.pad(x, [(kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _restore_same_padding(network: nn.Module) -> None:
    """Fuse the backbone (``rep()``) and give the 2x2 stem convolutions back their 'same' padding.

    RapidOCR's ``ConvBNAct.rep()`` turns the string 'same' into ``(k - 1) // 2``, which is 0 for a
    2x2 kernel, so the fused stem would no longer match the source's shapes.
    """
    same = [name for name, m in network.named_modules() if isinstance(m, nn.Conv2d) and m.padding == "same"]
    network.backbone.rep()
    for name in same:
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name)
        conv = getattr(parent, child)
        padded = SamePadConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            bias=conv.bias is not None,
        )
        padded.load_state_dict(conv.state_dict())
        setattr(parent, child, padded)


class PPOCRRecognizer(nn.Module):
    """A PP-OCR recogniser in deploy form, reading gray ``[N, 1, H, W]`` lines; logits ``[N, W / 8, C]``.

    ``num_classes`` is the width of the CTC head (our charset plus the blank). The weights are
    random until :mod:`edgeocr.models.pretrained` loads the source's, or a checkpoint is loaded.
    """

    frame_stride = 8

    def __init__(self, num_classes: int, input_height: int = 48, spec: PPOCRSpec = PPOCRV6_SMALL) -> None:
        super().__init__()
        if input_height < 32 or input_height % 16:
            # The backbone divides the height by 16 and the last pool takes every row that is left
            # (3 at the source's 48 px, 2 at 32 px): the weights are the same at any such height.
            raise ValueError(
                f"PP-OCR recognisers read lines 32, 48, 64... px high (a multiple of 16), not {input_height}"
            )
        self.pool_rows = input_height // 16
        base = rapidocr_base_model()(copy.deepcopy(spec.rapidocr_config(num_classes)))
        _restore_same_padding(base)
        self.spec = spec
        self.backbone = base.backbone
        self.encoder = base.head.ctc_encoder
        self.fc = base.head.ctc_head.fc
        stem = self.backbone.conv1.stem1.conv
        gray = nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=True)
        with torch.no_grad():
            gray.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
            gray.bias.copy_(stem.bias)
        self.backbone.conv1.stem1.conv = gray

    def stages(self) -> list[nn.Module]:
        """The network's parts from input to output, for freezing the first ones in fine-tuning."""
        b = self.backbone
        return [b.conv1, b.blocks2, b.blocks3, b.blocks4, b.blocks5, b.blocks6, self.encoder, self.fc]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features ``[N, W / 8, D]`` of gray lines ``[N, 1, H, W]`` (H the input height)."""
        b = self.backbone
        x = b.blocks6(b.blocks5(b.blocks4(b.blocks3(b.blocks2(b.conv1(images))))))
        x = F.avg_pool2d(x, [self.pool_rows, 2])
        return self.encoder(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images))
