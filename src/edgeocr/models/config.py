"""Recogniser configuration, as seen from the training side.

:class:`RecognizerConfig` is defined in :mod:`edgeocr.core.recognizer_config` (pydantic only) so
that the torch-free runtime can validate an exported model's sidecar with the very same schema;
this module re-exports it for code that builds networks.
"""

from edgeocr.core.recognizer_config import RecognizerConfig, WidthPolicy

__all__ = ["RecognizerConfig", "WidthPolicy"]
