"""PP-OCR's text detectors as plain ``nn.Module``s, built from RapidOCR's own PyTorch network code.

The layers come from the installed ``rapidocr`` package (Apache-2.0, the ``train`` extra), used as
a dependency and never copied, exactly as for the recognisers (:mod:`edgeocr.models.ppocr`).
PP-OCR's detectors ship as deploy-form ONNX files, and the networks here are that deploy form, so
the files' weights load one to one (:mod:`edgeocr.models.pretrained_detector`) and fine-tuning
trains plain convolutions with biases:

* PP-OCRv6 small (``rapidocr``): every batch norm is folded into the convolution before it and the
  neck's dilated re-parameterised blocks are merged into one large depthwise kernel each; here
  ``rep()`` of the backbone and neck, and the probability head's two batch norms folded into biases;
* PP-OCRv4 mobile (``rapidocr-onnxruntime``): each re-parameterisable layer of its PPLCNetV3
  backbone is one convolution with a bias followed by its learnable affine scale and shift, while
  the stem's and the head's batch norms stay; here each such layer gets that single convolution
  (RapidOCR's own ``rep()`` for this backbone reads Paddle's attribute names and fails in torch; the
  weights come from the file, so nothing needs fusing).

The module speaks our detector interface (:class:`edgeocr.models.detector.DBNet`'s):
``forward`` gives the core probabilities ``[N, 1, H, W]`` of normalised BGR images (what is
exported and what the source ONNX returns), ``forward_train`` the probability logits and DB's
threshold map. The source file holds no threshold head (inference does not use it), so that
head starts from RapidOCR's random initialisation and learns in fine-tuning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgeocr.models.detector_base import StridedDetector
from edgeocr.models.ppocr import _restore_same_padding, rapidocr_base_model


@dataclass(frozen=True)
class PPOCRDetectorSpec:
    """The RapidOCR architecture of one PP-OCR detector (``arch_config.yaml``'s entry, as a literal)."""

    backbone: dict[str, Any]
    neck: dict[str, Any]
    head_channels: int
    fold_head_norms: bool = True  # the source file has the probability head's batch norms folded

    def rapidocr_config(self) -> dict[str, Any]:
        return {
            "model_type": "det",
            "algorithm": "DB",
            "Transform": None,
            "Backbone": dict(self.backbone),
            "Neck": dict(self.neck),
            "Head": {"name": "DBHead", "k": 50, "fix_nan": True, "aux_in_channels": self.head_channels},
        }


PPOCRV6_DET_SMALL = PPOCRDetectorSpec(
    backbone={"name": "PPLCNetV4", "det": True, "model_size": "small"},
    neck={"name": "RepLKFPN", "out_channels": 96, "dilated_kernel_size": 7, "shortcut": True},
    head_channels=96,
)

PPOCRV4_DET_MOBILE = PPOCRDetectorSpec(
    backbone={"name": "PPLCNetV3", "scale": 0.75, "det": True},
    neck={"name": "RSEFPN", "out_channels": 96, "shortcut": True},
    head_channels=96,
    fold_head_norms=False,
)

#: Detector architectures of :func:`edgeocr.models.detector.build_detector` built here.
PPOCR_DETECTORS: dict[str, PPOCRDetectorSpec] = {
    "ppocrv6_det_small": PPOCRV6_DET_SMALL,
    "ppocrv4_det_mobile": PPOCRV4_DET_MOBILE,
}


def _deploy_form(network: nn.Module, spec: PPOCRDetectorSpec) -> None:
    """Turn RapidOCR's training-form network into the deploy form of the source files (see the module)."""
    if spec.backbone["name"] == "PPLCNetV4":
        _restore_same_padding(network)  # rep() of the backbone, and the stem's 2x2 'same' padding restored
        network.neck.rep()
        return
    for module in network.modules():
        if hasattr(module, "conv_kxk") and not getattr(module, "is_repped", True):  # a LearnableRepLayer
            module.reparam_conv = nn.Conv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                groups=module.groups,
                bias=True,
            )
            module.is_repped = True
            del module.conv_kxk, module.conv_1x1, module.identity


def _folded_head(head: nn.Module) -> nn.Sequential:
    """RapidOCR's DB probability head in deploy form: its batch norms folded into the convolutions before
    them (exactly, from their running statistics), so that it has the layers the source file holds."""
    conv1 = nn.Conv2d(head.conv1.in_channels, head.conv1.out_channels, 3, padding=1, bias=True)
    conv2 = copy.deepcopy(head.conv2)
    with torch.no_grad():
        scale1 = head.conv_bn1.weight / torch.sqrt(head.conv_bn1.running_var + head.conv_bn1.eps)
        conv1.weight.copy_(head.conv1.weight * scale1[:, None, None, None])
        conv1.bias.copy_(head.conv_bn1.bias - head.conv_bn1.running_mean * scale1)
        scale2 = head.conv_bn2.weight / torch.sqrt(head.conv_bn2.running_var + head.conv_bn2.eps)
        conv2.weight.mul_(scale2[None, :, None, None])  # ConvTranspose2d weights are [in, out, kh, kw]
        conv2.bias.copy_((conv2.bias - head.conv_bn2.running_mean) * scale2 + head.conv_bn2.bias)
    return nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), copy.deepcopy(head.conv3))


class PPOCRDetector(StridedDetector):
    """A PP-OCR DB detector in deploy form: normalised BGR ``[N, 3, H, W]`` in, H and W multiples of 32."""

    stride = 32

    def __init__(self, spec: PPOCRDetectorSpec = PPOCRV6_DET_SMALL) -> None:
        super().__init__()
        base = rapidocr_base_model()(copy.deepcopy(spec.rapidocr_config()))
        _deploy_form(base, spec)
        self.spec = spec
        self.backbone = base.backbone
        self.neck = base.neck
        head = base.head.binarize
        if spec.fold_head_norms:
            self.prob_head = _folded_head(head)
        else:
            self.prob_head = nn.Sequential(
                head.conv1, head.conv_bn1, nn.ReLU(), head.conv2, head.conv_bn2, nn.ReLU(), head.conv3
            )
        self.thresh_head = base.head.thresh  # ends in a sigmoid (RapidOCR's Head)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The neck's fused stride-4 features."""
        self._check_size(images)
        fused = self.neck(self.backbone(images))
        # RapidOCR's neck returns its auxiliary maps too in training mode; only the fused map is used.
        return fused["fuse"] if isinstance(fused, dict) else fused

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Core probabilities ``[N, 1, H, W]``."""
        return torch.sigmoid(self.prob_head(self.features(images)))

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probability logits, threshold map in [0, 1]), both ``[N, 1, H, W]``."""
        features = self.features(images)
        return self.prob_head(features), self.thresh_head(features)


def build_ppocr_detector(arch: str) -> PPOCRDetector:
    """A PP-OCR detector with RapidOCR's initial weights (load the source's with edgeocr.models.pretrained)."""
    return PPOCRDetector(PPOCR_DETECTORS[arch])
