"""Build line detectors from the short specs the command line and the HTTP service take.

``edgeocr read --detector`` and ``edgeocr serve --detector`` name a detector the same way:
``rapidocr`` (or nothing) for PP-OCR's detector from ``rapidocr-onnxruntime``, otherwise the name
of a detector shipped in the package (``default``) or the path of an exported edgeocr detector
``.onnx`` (checked against its sidecar). Both go through
:func:`build_line_detector`, so the two commands cannot drift apart.
"""

from __future__ import annotations

from dataclasses import replace

from edgeocr.runtime.protocols import LineDetector
from edgeocr.runtime.recognizer import EngineConfig

#: The spec that selects PP-OCR's detector (the default when none is given).
RAPIDOCR = "rapidocr"


def build_line_detector(spec: str | None, engine: EngineConfig) -> LineDetector:
    """The detector ``spec`` names: None or 'rapidocr' (PP-OCR's), else a shipped detector's name or a path.

    ``engine.intra_op_threads`` applies to either; an unusable model raises
    :class:`~edgeocr.core.errors.ModelError`, a missing extra an ``EdgeOCRError`` naming it.
    """
    if spec in (None, RAPIDOCR):
        from edgeocr.runtime.rapidocr_detector import RapidOCRDetector, RapidOCRDetectorConfig

        return RapidOCRDetector(RapidOCRDetectorConfig(intra_op_threads=engine.intra_op_threads))
    from edgeocr.runtime.detector import OnnxDetector
    from edgeocr.runtime.models import resolve_detector

    # A detector always takes turns with a reader's recogniser: see EngineConfig.spin_wait.
    return OnnxDetector(resolve_detector(spec), replace(engine, spin_wait=False))
