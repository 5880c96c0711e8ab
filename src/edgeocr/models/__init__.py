"""Recognition networks (torch): CRNN and SVTR-like families, their factory and ONNX export.

Only training and export import this package; inference runs from the exported ONNX file
through :mod:`edgeocr.runtime` without torch.
"""

from edgeocr.models.config import RecognizerConfig
from edgeocr.models.export import export_onnx
from edgeocr.models.factory import (
    available_architectures,
    build_from_config,
    build_recognizer,
    default_config,
)

__all__ = [
    "RecognizerConfig",
    "available_architectures",
    "build_from_config",
    "build_recognizer",
    "default_config",
    "export_onnx",
]
