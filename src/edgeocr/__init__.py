"""edgeocr: read printed industrial codes in real time on a plain CPU or an edge GPU.

    from edgeocr import Reader
    reader = Reader()                      # the shipped detector and recogniser, offline
    result = reader.read("photo.jpg")      # an ImageResult: lines, image size, timings
    print(result)

Importing the package is cheap and never imports torch: the reading API below is imported on
first use (PEP 562), and training and optimisation live behind the ``train`` extra.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from edgeocr.core.errors import EdgeOCRError

__version__ = "0.1.0"

# name -> module that defines it; imported when first asked for.
_LAZY = {
    "Reader": "edgeocr.runtime.reader",
    "ReaderConfig": "edgeocr.runtime.reader",
    "ReadOptions": "edgeocr.runtime.reader",
    "Region": "edgeocr.runtime.reader",
    "ImageResult": "edgeocr.runtime.results",
    "LineRead": "edgeocr.runtime.results",
    "EngineConfig": "edgeocr.runtime.recognizer",
    "OnnxRecognizer": "edgeocr.runtime.recognizer",
    "shipped_models": "edgeocr.runtime.models",
    "shipped_detectors": "edgeocr.runtime.models",
}

__all__ = [
    "EdgeOCRError",
    "EngineConfig",
    "ImageResult",
    "LineRead",
    "OnnxRecognizer",
    "ReadOptions",
    "Reader",
    "ReaderConfig",
    "Region",
    "__version__",
    "shipped_detectors",
    "shipped_models",
]
assert set(__all__) == {"EdgeOCRError", "__version__", *_LAZY}

if TYPE_CHECKING:
    from edgeocr.runtime.models import shipped_detectors, shipped_models
    from edgeocr.runtime.reader import Reader, ReaderConfig, ReadOptions, Region
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer
    from edgeocr.runtime.results import ImageResult, LineRead


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'edgeocr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
