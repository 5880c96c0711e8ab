"""How the failure of one input is recorded in a run that goes on (``edgeocr read``, ``eval``, ``watch``).

A run over many images records the failure of one as its error row and reads the others. Our own
errors (:class:`~edgeocr.core.errors.EdgeOCRError`) already say what went wrong and name the input;
any other exception (an OpenCV error, MemoryError, a ValueError from an odd array) is recorded by
its type, qualified by its module unless it is a built-in (``cv2.error``, ``MemoryError``), and the
last line of its message. Ctrl-C (KeyboardInterrupt) is not an ``Exception`` and is never caught
as one input's failure.
"""

from __future__ import annotations

from edgeocr.core.errors import EdgeOCRError


def exception_name(exc: BaseException) -> str:
    """``MemoryError``, ``ValueError``; ``cv2.error``, ``numpy.linalg.LinAlgError`` for the others."""
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def describe_failure(exc: BaseException) -> str:
    """One line for an error row: our own errors' message; any other exception's type and message."""
    if isinstance(exc, EdgeOCRError):
        return str(exc)
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{exception_name(exc)}: {lines[-1]}" if lines else exception_name(exc)
