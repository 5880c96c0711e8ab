"""The engine protocol every measured recogniser follows, and ours behind it.

A :class:`RecognitionEngine` reads one text line per crop, given whole, and returns ``(text,
confidence)``; :class:`EdgeOcrEngine` is an exported edgeocr recogniser. The peers (EasyOCR,
PP-OCR, Tesseract) implement the same protocol in :mod:`edgeocr.bench.peers`; training,
optimisation and the benchmark all time and score engines through :mod:`edgeocr.measure.timing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edgeocr.core.errors import EdgeOCRError
from edgeocr.runtime.engines import DEVICES, engine_config  # noqa: F401 - DEVICES: the benchmark's --device


class EngineNotInstalled(EdgeOCRError):
    """A peer engine's package, binary or weights are missing; the message says which and how to install."""


class DeviceNotSupported(EngineNotInstalled):
    """The engine cannot run on the device asked for (Tesseract on a GPU, torch without CUDA)."""


@runtime_checkable
class RecognitionEngine(Protocol):
    """One text-line recogniser under test."""

    name: str  # as it appears in reports: "easyocr", "edgeocr:default", ...
    threads: int  # the thread count the engine really runs with
    device: str  # "cpu" or "cuda"
    batches: bool  # whether read_batch sends several crops through the network at once

    @property
    def version(self) -> str:
        """Package and model version, e.g. 'easyocr 1.7.2 (english_g2)'."""
        ...

    @property
    def model_size_bytes(self) -> int:
        """Bytes of the recognition weights on disk."""
        ...

    def load(self) -> None:
        """Import the engine and load its weights; raises EngineNotInstalled when they are missing."""
        ...

    def read(self, image: np.ndarray) -> tuple[str, float]:
        """Read one BGR uint8 crop: (text, confidence in [0, 1])."""
        ...

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Read several crops (one network call where :attr:`batches`)."""
        ...


class EdgeOcrEngine:
    """An exported edgeocr recogniser (``OnnxRecognizer``), by shipped name or path."""

    batches = True

    def __init__(
        self, model: str | Path, threads: int, max_batch_size: int = 64, name: str | None = None, device: str = "cpu"
    ) -> None:
        from edgeocr.runtime.models import resolve_model

        self.model_path = resolve_model(model)  # ModelError now, before any work, for a bad name or path
        self.threads = threads
        self.device = device
        self.max_batch_size = max_batch_size
        given = str(model)
        if given.endswith(".onnx") or Path(given).exists():  # a path: runs keep "model.onnx" in a named folder
            label = self.model_path.parent.name if self.model_path.stem == "model" else self.model_path.stem
        else:  # a shipped model's name
            label = given
        self.name = name or f"edgeocr:{label}"
        self._recognizer = None

    @property
    def version(self) -> str:
        if self._recognizer is None:
            return "?"
        sidecar = self._recognizer.sidecar
        return f"{sidecar.config.arch} sha256:{sidecar.onnx_sha256[:12]} (edgeocr {sidecar.edgeocr_version})"

    @property
    def model_size_bytes(self) -> int:
        return self.model_path.stat().st_size

    def load(self) -> None:
        from edgeocr.runtime.recognizer import OnnxRecognizer

        self._recognizer = OnnxRecognizer(self.model_path, self._engine_config())

    def _engine_config(self):
        return engine_config(self.device, "onnxruntime", self.threads, max_batch_size=self.max_batch_size)

    def read(self, image: np.ndarray) -> tuple[str, float]:
        return self.read_batch([image])[0]

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        assert self._recognizer is not None, "load() first"
        return [(line.text, float(line.confidence)) for line in self._recognizer.recognize(images)]
