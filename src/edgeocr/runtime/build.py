"""Build line detectors from the short specs the command line and the HTTP service take.

``edgeocr read --detector`` and ``edgeocr serve --detector`` name a detector the same way: the name
of a detector shipped in the package (``default``, used when none is named; ``fast``) or the path of
an exported edgeocr detector ``.onnx`` (checked against its sidecar), or ``rapidocr`` for PP-OCR's
detector from the ``rapidocr-onnxruntime`` package (kept for comparisons; reading does not need it). Both go through
:func:`build_line_detector`, so the two commands cannot drift apart.
"""

from __future__ import annotations

from dataclasses import replace

from edgeocr.runtime.protocols import LineDetector
from edgeocr.runtime.recognizer import EngineConfig

#: The spec that selects PP-OCR's detector from the rapidocr-onnxruntime package.
RAPIDOCR = "rapidocr"
#: The shipped detector used when none is named.
DEFAULT_DETECTOR = "default"


def build_line_detector(spec: str | None, engine: EngineConfig) -> LineDetector:
    """The detector ``spec`` names: 'rapidocr' (PP-OCR's package), else a shipped detector's name or a path;
    None: the shipped 'default'.

    ``engine.intra_op_threads`` applies to either; an unusable model raises
    :class:`~edgeocr.core.errors.ModelError`, a missing extra an ``EdgeOCRError`` naming it.
    """
    if spec == RAPIDOCR:
        from edgeocr.runtime.rapidocr_detector import RapidOCRDetector, RapidOCRDetectorConfig

        return RapidOCRDetector(RapidOCRDetectorConfig(intra_op_threads=engine.intra_op_threads))
    from edgeocr.runtime.detector import OnnxDetector
    from edgeocr.runtime.models import resolve_detector

    # A detector always takes turns with a reader's recogniser: see EngineConfig.spin_wait.
    return OnnxDetector(resolve_detector(spec or DEFAULT_DETECTOR), replace(engine, spin_wait=False))
