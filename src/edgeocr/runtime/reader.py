"""Read the text lines of whole images: locate lines, crop them upright, recognise them in batches.

A :class:`Reader` is built once from a frozen :class:`ReaderConfig` and is then **immutable and
thread-safe**: it holds no per-call state, so one instance serves many threads (ONNX Runtime's
``InferenceSession.run`` is thread-safe, and the detector and format matcher it is given must
be too). Per-call choices go in a frozen :class:`ReadOptions`, never into the reader.

Lines are located in one of four modes:

* ``"auto"`` (the default): per image, a crop-shaped image (small, or elongated and not large:
  :func:`edgeocr.core.layout.looks_like_line_crop`) is read whole, any other goes through the
  detector; each :class:`ImageResult` records in ``mode`` which of the two was done;
* ``"roi"``: fixed regions from the configuration (rectangles or four-point polygons, in pixels
  or relative to the image size), for cameras that always see the code in the same place;
* ``"detector"``: any object implementing the :class:`LineDetector` protocol (the DB detector of
  :mod:`edgeocr.runtime.detector`, the PP-OCR adapter of :mod:`edgeocr.runtime.rapidocr_detector`,
  or the caller's own);
* ``"whole"``: the whole image is one line crop (images that are already crops).

:meth:`Reader.read_batch` batches for real: it locates the lines of every image first, then
sends all line crops of all images to the recogniser at once, which sorts them by width and runs
them in batches of ``EngineConfig.max_batch_size``. :meth:`Reader.read` is ``read_batch`` of one.

Formats (lot/date/serial grammars) are applied by a :class:`FormatMatcher` working on the
per-frame probabilities; the reader works without one (free reading). Until
``OnnxRecognizer.recognize_probs`` exists, :func:`_line_probabilities` computes those
probabilities with the recogniser's session, batched exactly as ``OnnxRecognizer.recognize``.

Line crops come from :func:`edgeocr.core.crops.crop_line`, the one crop of the package (the CLI
and the service cut the same pixels for the same polygon). Each crop then goes through the configured
preprocessing pipeline (``ReaderConfig.preprocess``, or a region's own ``Region.preprocess``;
:mod:`edgeocr.core.preprocess`), built once per reader and immutable, before the recogniser's
own resize and normalisation (those stay the model's, from its sidecar).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeocr.core.charset import Charset
from edgeocr.core.crops import crop_line
from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.core.formats import FormatSet, compile_format, decode_constrained
from edgeocr.core.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source, load_image
from edgeocr.core.layout import looks_like_line_crop
from edgeocr.core.preprocess import Normalize, Pipeline, PipelineError, parse_pipeline
from edgeocr.runtime.build import DEFAULT_DETECTOR
from edgeocr.runtime.engines import engine_config, open_recognizer
from edgeocr.runtime.models import resolve_model
from edgeocr.runtime.protocols import DetectedLine, FormatMatch, FormatMatcher, LineDetector  # noqa: F401 - public here too
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer
from edgeocr.runtime.results import ImageResult, LineRead, Point, path_of

DetectionMode = Literal["auto", "roi", "detector", "whole"]
#: The modes that use a :class:`LineDetector`.
_DETECTING = ("auto", "detector")


class ReadCancelled(EdgeOCRError):
    """A read stopped part-way because its caller's ``should_stop`` said so (e.g. the service's time limit)."""


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise ReadCancelled("the read was cancelled")


# --- configuration -------------------------------------------------------------------------------


def line_pipeline(spec: str) -> Pipeline:
    """The preprocessing pipeline of ``spec`` for line crops; PipelineError (a ValueError) if unusable."""
    pipeline = parse_pipeline(spec)  # PipelineError names the bad step and field
    if any(isinstance(op, Normalize) for op in pipeline.ops):
        # The recogniser normalises its input itself (sidecar mean/std) and needs uint8 crops.
        raise PipelineError(f"preprocess {spec!r}: 'normalize' is the recogniser's own step; leave it out")
    return pipeline


class Region(BaseModel):
    """A fixed region holding one text line: a rectangle or a four-point polygon."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(
        default=None, min_length=1, description="Name reported with the line read here (e.g. 'lot')."
    )
    rect: tuple[float, float, float, float] | None = Field(
        default=None,
        description="Axis-aligned rectangle (x, y, width, height) of the line; give rect or quad.",
    )
    quad: tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]] | None = Field(
        default=None,
        description=(
            "Four (x, y) corners of a tilted or perspective line, in reading order: top-left, "
            "top-right, bottom-right, bottom-left of the text; give rect or quad."
        ),
    )
    units: Literal["pixels", "relative"] = Field(
        default="pixels",
        description=(
            "'pixels': coordinates in image pixels (a rect (x, y, w, h) covers pixel columns x..x+w-1); "
            "'relative': fractions of the image width (x) and height (y), in [0, 1]."
        ),
    )
    format: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the format expected in this region (one of ReaderConfig.formats); None: any.",
    )
    preprocess: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Preprocessing of this region's line crop (a preset name or pipeline spec, as "
            "ReaderConfig.preprocess); None: the reader's."
        ),
    )

    @field_validator("preprocess")
    @classmethod
    def _check_preprocess(cls, value: str | None) -> str | None:
        if value is not None:
            line_pipeline(value)
        return value

    @model_validator(mode="after")
    def _check_geometry(self) -> Region:
        if (self.rect is None) == (self.quad is None):
            raise ValueError("a region needs exactly one of rect or quad")
        if self.rect is not None:
            x, y, width, height = self.rect
            if width <= 0 or height <= 0:
                raise ValueError(f"rect width and height must be positive, got {self.rect}")
            if x < 0 or y < 0:
                raise ValueError(f"rect corner must not be negative, got {self.rect}")
            if self.units == "relative" and (x + width > 1.0 + 1e-9 or y + height > 1.0 + 1e-9):
                raise ValueError(f"relative rect {self.rect} extends beyond the image (x + w and y + h must be <= 1)")
        corners = self._corners()
        if (corners < 0).any() or (self.units == "relative" and (corners > 1.0 + 1e-9).any()):
            raise ValueError(f"region corners must lie inside the image, got {corners.tolist()}")
        if _signed_area(corners) <= 0:
            raise ValueError(
                "quad corners must be given in reading order top-left, top-right, bottom-right, "
                f"bottom-left (clockwise on screen) and span an area, got {corners.tolist()}"
            )
        return self

    def _corners(self) -> np.ndarray:
        if self.rect is not None:
            x, y, width, height = self.rect
            return np.array([[x, y], [x + width, y], [x + width, y + height], [x, y + height]], np.float64)
        return np.array(self.quad, np.float64)

    def polygon(self, width: int, height: int) -> np.ndarray:
        """The corners in pixels of a ``width`` x ``height`` image, float64 ``[4, 2]``."""
        corners = self._corners()
        if self.units == "relative":
            corners = corners * np.array([width, height], np.float64)
        return corners


def _signed_area(corners: np.ndarray) -> float:
    """Shoelace area; positive when the corners run clockwise on screen (y pointing down)."""
    x, y = corners[:, 0], corners[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


#: ``ReaderConfig.fallback_below``'s default: see docs/reading.md (the cascade) for the curve it was chosen from.
DEFAULT_FALLBACK_BELOW = 0.7


class ReaderConfig(BaseModel):
    """Everything a :class:`Reader` is built from. Frozen: a reader's behaviour never changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="default",
        min_length=1,
        description="Recogniser: the name of a shipped model or the path of an exported .onnx file.",
    )
    fallback: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "A second recogniser (name or path) that re-reads the lines the first one is unsure of: "
            "confidence below fallback_below, or no declared format matched. Its charset must hold every "
            "character of the first one's. None: no cascade."
        ),
    )
    fallback_below: float = Field(
        default=DEFAULT_FALLBACK_BELOW,
        gt=0.0,
        le=1.0,
        description="Lines read by the first recogniser below this confidence are re-read by the fallback.",
    )
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description="How ONNX Runtime runs the recogniser: threads, providers, batch size, decoder.",
    )
    mode: DetectionMode = Field(
        default="auto",
        description=(
            "How lines are located: 'auto' (per image: a crop-shaped image is read whole, any other "
            "goes through the detector; edgeocr.core.layout.looks_like_line_crop), 'roi' (the fixed "
            "regions below), 'detector' (the LineDetector, on every image) or 'whole' (the whole "
            "image is one line). 'auto' and 'detector' use the detector passed to the Reader ('auto': "
            "the shipped one when none is passed)."
        ),
    )
    regions: tuple[Region, ...] = Field(
        default=(), description="The fixed line regions read in 'roi' mode, in output order."
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=("Lines whose confidence (the weakest character's) is below this are reported as not valid."),
    )
    formats: tuple[str, ...] = Field(
        default=(),
        description=("Names of the formats lines may take (compiled by edgeocr.core.formats); empty: free text."),
    )
    preprocess: str = Field(
        default="none",
        description=(
            "Preprocessing applied to each line crop (not to the whole frame) before the recogniser: "
            "a preset name of edgeocr.core.preprocess (none, dotmatrix, low_contrast, binarize, "
            "uneven_light) or a pipeline spec such as 'gray|clahe:clip=2.0'. 'none' measured best "
            "for the default model on realdev (docs/preprocessing.md). The recogniser's own "
            "resize and normalisation always follow."
        ),
    )
    max_pixels: int | None = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description=(
            "Input images with more pixels are refused before decoding (decompression-bomb guard); None: no limit."
        ),
    )

    @field_validator("model", "fallback", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("preprocess")
    @classmethod
    def _check_preprocess(cls, value: str) -> str:
        line_pipeline(value)
        return value

    @model_validator(mode="after")
    def _check_regions(self) -> ReaderConfig:
        if self.mode == "roi" and not self.regions:
            raise ValueError("mode 'roi' needs at least one region")
        if self.mode != "roi" and self.regions:
            raise ValueError(f"regions are only read in mode 'roi', not in mode {self.mode!r}")
        names = [r.name for r in self.regions if r.name is not None]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"region names must be unique, repeated: {', '.join(duplicated)}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats are listed more than once: {self.formats}")
        for region in self.regions:
            if region.format is not None and region.format not in self.formats:
                raise ValueError(
                    f"region {region.name or '(unnamed)'} expects format {region.format!r}, "
                    f"which is not in formats {list(self.formats)}"
                )
        return self


class ReadOptions(BaseModel):
    """Per-call choices; they apply to one call only and never change the reader."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_confidence: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Overrides ReaderConfig.min_confidence for this call."
    )
    formats: tuple[str, ...] | None = Field(
        default=None,
        description=("Formats in play for this call, a subset of ReaderConfig.formats; None: all; (): free text."),
    )
    regions: tuple[str, ...] | None = Field(
        default=None, description="In 'roi' mode, read only the regions with these names; None: all."
    )
    return_crops: bool = Field(
        default=False,
        description="Attach each line's upright crop, as preprocessed and fed to the recogniser, to its LineRead.",
    )


DEFAULT_OPTIONS = ReadOptions()

# --- geometry ------------------------------------------------------------------------------------


def _as_points(quad: np.ndarray) -> tuple[Point, Point, Point, Point]:
    return tuple((float(x), float(y)) for x, y in quad)  # type: ignore[return-value]


# --- recognition with probabilities --------------------------------------------------------------


class CompiledFormats:
    """The :class:`FormatMatcher` for :mod:`edgeocr.core.formats` declarations (patterns, built-ins).

    Each declaration is compiled when the matcher is built (a bad pattern fails there, naming
    its position), and one :class:`FormatSet` per combination of allowed formats is built once
    and reused; the search itself is format-constrained CTC decoding, never a filter applied to
    the free read.
    """

    def __init__(self, specs: Sequence[str], beam_width: int = 32) -> None:
        self._formats = {spec: compile_format(spec) for spec in specs}
        self._sets: dict[tuple[str, ...], FormatSet] = {}
        self._lock = threading.Lock()
        self.beam_width = beam_width

    def _set(self, allowed: tuple[str, ...]) -> FormatSet:
        with self._lock:
            if allowed not in self._sets:
                self._sets[allowed] = FormatSet([self._formats[name] for name in allowed])
            return self._sets[allowed]

    def match(self, probs: np.ndarray, charset: Charset, allowed: Sequence[str]) -> FormatMatch:
        read = decode_constrained(probs, charset, self._set(tuple(allowed)), beam_width=self.beam_width)
        return FormatMatch(
            text=read.text,
            confidence=read.confidence,
            char_confidences=read.char_confidences,
            format_name=read.format_name,
            valid=read.valid,
        )


# --- the reader ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _LineJob:
    """A located line waiting for recognition."""

    image_index: int
    poly: np.ndarray
    region: str | None
    region_format: str | None
    detection_score: float | None
    region_preprocess: str | None = None


#: ``Reader(detector=...)``'s default: the line detector shipped in the package.
_UNSET = object()


class Reader:
    """Reads text lines from images. Immutable; ``read``/``read_batch`` may run in many threads at once.

    The front door takes keywords::

        reader = Reader()                                   # auto: crops read whole, photos detected
        reader = Reader(model="fast", mode="whole")         # each image is one line crop
        reader = Reader(detector="rapidocr")                # every image through PP-OCR's detector
        reader = Reader(formats=["LOT [A-Z0-9]{7}"], device="cpu", threads=2)

    ``mode``: 'auto', 'detector', 'whole' or 'roi' (``ReaderConfig.mode``). Left out, it follows
    ``detector``: no ``detector`` keyword gives 'auto' with the shipped detector (each image that
    :func:`~edgeocr.core.layout.looks_like_line_crop` is read whole, any other is detected);
    ``detector=None`` gives 'whole' (as before 'auto' existed); any other ``detector`` gives
    'detector' (every image is detected). ``mode='auto'`` with a ``detector`` uses that detector
    for the photo-shaped images. ``model``: a shipped recogniser's name ('default', 'accurate',
    'fast', ...) or an ``.onnx`` path. ``detector``: a shipped detector's name or an ``.onnx`` path,
    'rapidocr' for PP-OCR's (the ``ppocr-detector`` extra), a :class:`LineDetector` object, or None
    (no detector). ``formats``: the code formats lines may take (free text when empty). ``device``: 'cpu'
    or 'cuda' (ONNX Runtime's CUDA provider; refused, never silently the CPU, when it is missing).
    ``engine``: 'onnxruntime' (default), 'openvino' (CPU; also an OpenVINO ``.xml`` written by
    ``edgeocr optimize``) or 'tensorrt' (with 'cuda'), or a whole :class:`EngineConfig`.
    ``threads``: ONNX Runtime threads (0: all cores). ``min_confidence``: reads below it are not
    valid. ``fallback`` / ``fallback_below``: a second, stronger recogniser that re-reads the lines
    read below that confidence or out of format (a cascade; each line says which model read it).
    For everything else (regions, preprocessing, engine details) pass a frozen :class:`ReaderConfig`
    instead: ``Reader(config, detector=...)``; a config in mode 'auto' given without a ``detector``
    keyword gets the shipped detector, one in mode 'detector' needs one.
    """

    __slots__ = ("_config", "_recognizer", "_fallback", "_detector", "_matcher", "_charset", "_pipelines")

    def __init__(
        self,
        config: ReaderConfig | None = None,
        *,
        mode: DetectionMode | None = None,
        model: str | os.PathLike[str] | None = None,
        detector: LineDetector | str | os.PathLike[str] | None = _UNSET,  # type: ignore[assignment]
        formats: Sequence[str] | None = None,
        device: Literal["cpu", "cuda"] | None = None,
        engine: Literal["onnxruntime", "openvino", "tensorrt"] | EngineConfig | None = None,
        threads: int | None = None,
        min_confidence: float | None = None,
        fallback: str | os.PathLike[str] | None = None,
        fallback_below: float | None = None,
        format_matcher: FormatMatcher | None = None,
    ) -> None:
        shortcuts = {
            "mode": mode,
            "model": model,
            "formats": formats,
            "device": device,
            "engine": engine,
            "threads": threads,
            "min_confidence": min_confidence,
        }
        if config is None:
            if mode is None:  # detector=None has meant 'whole' and a named detector 'detector' since before 'auto'
                mode = "auto" if detector is _UNSET else ("whole" if detector is None else "detector")
            if detector is _UNSET:
                detector = DEFAULT_DETECTOR if mode in _DETECTING else None
            if isinstance(engine, EngineConfig):
                if device is not None or threads is not None:
                    raise TypeError("an EngineConfig already says the device and threads: pass it alone")
                engine_cfg = engine
            else:
                engine_cfg = engine_config(device or "cpu", engine or "onnxruntime", threads or 0)
            fields: dict[str, object] = {"engine": engine_cfg, "mode": mode}
            if model is not None:
                fields["model"] = model
            if formats is not None:
                if isinstance(formats, str):
                    raise TypeError("formats takes a list of format names, e.g. formats=['LOT [A-Z0-9]{7}']")
                fields["formats"] = tuple(formats)
            if min_confidence is not None:
                fields["min_confidence"] = min_confidence
            if fallback is not None:
                fields["fallback"] = fallback
            if fallback_below is not None:
                fields["fallback_below"] = fallback_below
            config = ReaderConfig(**fields)
        else:
            given = sorted(name for name, value in shortcuts.items() if value is not None)
            if given:
                raise TypeError(f"pass either a ReaderConfig or the keywords {given}, not both")
            if detector is _UNSET:
                detector = DEFAULT_DETECTOR if config.mode in _DETECTING else None
        if isinstance(detector, (str, os.PathLike)):
            if config.mode not in _DETECTING:
                raise ValueError(f"a detector was named but the mode is {config.mode!r}, which would ignore it")
            from edgeocr.runtime.build import build_line_detector

            detector = build_line_detector(os.fspath(detector), config.engine)
        if config.mode in _DETECTING and detector is None:
            raise EdgeOCRError(
                f"mode {config.mode!r} needs a detector: pass detector='default' (shipped), 'rapidocr' (PP-OCR's) "
                "or a LineDetector object, or use mode 'whole' to read each image as one line"
            )
        if config.mode not in _DETECTING and detector is not None:
            raise ValueError(f"a detector was given but the mode is {config.mode!r}, which would ignore it")
        if detector is not None and not isinstance(detector, LineDetector):
            raise TypeError(f"{type(detector).__name__} has no detect(image) method")
        if config.formats and format_matcher is None:
            format_matcher = CompiledFormats(config.formats)
        if format_matcher is not None and not config.formats:
            raise ValueError("a format_matcher was given but ReaderConfig.formats is empty")
        engine = config.engine
        if config.mode in _DETECTING:  # two sessions take turns: see EngineConfig.spin_wait
            engine = replace(engine, spin_wait=False)
        recognizer = open_recognizer(resolve_model(config.model), engine)
        fallback = None
        if config.fallback is not None:
            fallback = open_recognizer(resolve_model(config.fallback), engine)
            missing = sorted(set(recognizer.config.charset) - set(fallback.config.charset))
            if missing:
                raise EdgeOCRError(
                    f"fallback {config.fallback!r} cannot read {len(missing)} character(s) that {config.model!r} "
                    f"reads ({''.join(missing)!r}): its charset must hold the first model's"
                )
        # Pipelines are frozen and their ops keep no state between calls: safe to share across threads.
        specs = [config.preprocess, *(r.preprocess for r in config.regions if r.preprocess is not None)]
        pipelines = MappingProxyType({spec: line_pipeline(spec) for spec in specs})
        for name, value in (
            ("_config", config),
            ("_recognizer", recognizer),
            ("_fallback", fallback),
            ("_detector", detector),
            ("_matcher", format_matcher),
            ("_charset", recognizer.config.charset_obj),
            ("_pipelines", pipelines),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Reader is immutable: cannot set {name!r}; build a new Reader instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Reader is immutable: cannot delete {name!r}")

    @property
    def config(self) -> ReaderConfig:
        """The frozen configuration this reader was built from."""
        return self._config

    @property
    def recognizer(self) -> OnnxRecognizer:
        """The line recogniser (its ``recognize`` is thread-safe)."""
        return self._recognizer

    @property
    def detector(self) -> LineDetector | None:
        """The line detector of modes 'auto' and 'detector', else None."""
        return self._detector

    # -- public API --

    def read(self, image: ImageSource, *, options: ReadOptions | None = None) -> ImageResult:
        """The lines of one image (a path, encoded bytes, a numpy array or a PIL image)."""
        return self.read_batch([image], options=options)[0]

    def read_batch(
        self,
        images: Sequence[ImageSource],
        *,
        options: ReadOptions | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[ImageResult]:
        """The lines of each image; all line crops of all images are recognised in shared batches.

        An image that cannot be loaded raises :class:`ImageError` naming it (for the whole call).
        ``should_stop``: called between images and between lines; when it returns True the read
        stops there with :class:`ReadCancelled` (a caller's time limit cancels the work, not just
        the wait).
        """
        if isinstance(images, (np.ndarray, str, bytes, bytearray, memoryview, os.PathLike)):
            raise TypeError("read_batch takes a sequence of images; use read() for a single image")
        options = options or DEFAULT_OPTIONS
        self._check_options(options)
        return self._read(list(images), options, None, should_stop)  # list: iterated twice

    def read_regions(
        self,
        images: Sequence[ImageSource],
        regions: Sequence[Region],
        *,
        options: ReadOptions | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[ImageResult]:
        """Read the given regions of each image, whatever the reader's mode, exactly as mode 'roi' reads its own.

        For callers whose regions change per call (the HTTP service's requests): the same crop, bounds
        check, per-region format and batching as a reader configured with these regions. A region's
        ``format`` must be among the reader's formats and its ``preprocess`` among the pipelines the
        reader was built with (its ``preprocess`` or its configured regions'); ``options.regions``
        (names of configured regions) does not apply. ``should_stop`` as in :meth:`read_batch`.
        """
        if isinstance(images, (np.ndarray, str, bytes, bytearray, memoryview, os.PathLike)):
            raise TypeError("read_regions takes a sequence of images")
        options = options or DEFAULT_OPTIONS
        if options.regions is not None:
            raise ValueError("ReadOptions.regions names configured regions; read_regions reads the regions given")
        self._check_options(options)
        regions = tuple(regions)
        for region in regions:
            if region.format is not None and region.format not in self._config.formats:
                raise ValueError(
                    f"region {region.name or '(unnamed)'} expects format {region.format!r}, which is "
                    f"not among the reader's formats {list(self._config.formats)}"
                )
            if region.preprocess is not None and region.preprocess not in self._pipelines:
                raise ValueError(
                    f"region {region.name or '(unnamed)'} asks for preprocess {region.preprocess!r}, "
                    f"which this reader was not built with ({sorted(self._pipelines)})"
                )
        return self._read(list(images), options, regions, should_stop)

    def _read(
        self,
        images: list[ImageSource],
        options: ReadOptions,
        regions: tuple[Region, ...] | None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[ImageResult]:
        jobs: list[_LineJob] = []
        crops: list[np.ndarray] = []
        sizes: list[tuple[int, int]] = []
        timings: list[dict[str, float]] = []
        modes: list[str] = []
        for index, source in enumerate(images):
            _check(should_stop)
            began = time.perf_counter()
            image = load_image(source, max_pixels=self._config.max_pixels)
            loaded = time.perf_counter()
            source_name = describe_source(source)
            if regions is None:
                mode, located_jobs = self._locate(image, index, options, source_name)
            else:
                mode, located_jobs = "roi", _region_jobs(regions, image, index, source_name)
            modes.append(mode)
            for job in located_jobs:
                jobs.append(job)
                pipeline = self._pipelines[job.region_preprocess or self._config.preprocess]
                crops.append(pipeline.apply(crop_line(image, job.poly)))
            located = time.perf_counter()
            sizes.append((image.shape[1], image.shape[0]))
            timings.append({"load": (loaded - began) * 1e3, "locate": (located - loaded) * 1e3})
        _check(should_stop)
        began = time.perf_counter()
        lines = self._recognise(jobs, crops, options, should_stop)
        per_line_ms = (time.perf_counter() - began) * 1e3 / max(1, len(lines))
        per_image: list[list[LineRead]] = [[] for _ in images]
        for job, line in zip(jobs, lines, strict=True):
            per_image[job.image_index].append(line)
        results = []
        for source, found, size, timing, mode in zip(images, per_image, sizes, timings, modes, strict=True):
            timing["recognize"] = per_line_ms * len(found)
            timing["total"] = timing["load"] + timing["locate"] + timing["recognize"]
            results.append(ImageResult(tuple(found), size, timing, describe_source(source), path_of(source), mode=mode))
        return results

    # -- steps --

    def _check_options(self, options: ReadOptions) -> None:
        if options.formats is not None:
            unknown = [f for f in options.formats if f not in self._config.formats]
            if unknown:
                raise ValueError(
                    f"ReadOptions.formats {unknown} are not among the reader's formats {list(self._config.formats)}"
                )
        if options.regions is not None:
            if self._config.mode != "roi":
                raise ValueError(
                    f"ReadOptions.regions applies to mode 'roi' only, the reader's mode is {self._config.mode!r}"
                )
            known = {r.name for r in self._config.regions}
            unknown = [r for r in options.regions if r not in known]
            if unknown:
                raise ValueError(
                    f"ReadOptions.regions {unknown} are not among the reader's regions "
                    f"{sorted(str(name) for name in known if name is not None)}"
                )

    def _locate(
        self, image: np.ndarray, index: int, options: ReadOptions, source: str
    ) -> tuple[Literal["whole", "roi", "detector"], list[_LineJob]]:
        """The mode actually used for this image ('auto' resolved to 'whole' or 'detector') and its line jobs."""
        height, width = image.shape[:2]
        mode = self._config.mode
        if mode == "auto":  # decided by the image's size alone, so a batch reads each image as alone
            mode = "whole" if looks_like_line_crop(height, width) else "detector"
        if mode == "whole":
            whole = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
            return mode, [_LineJob(index, whole, None, None, None)]
        if mode == "roi":
            wanted = [r for r in self._config.regions if options.regions is None or r.name in options.regions]
            return mode, _region_jobs(wanted, image, index, source)
        assert self._detector is not None  # guaranteed by __init__
        limits = np.array([width, height], np.float64)
        jobs = []
        for line in self._detector.detect(image):
            poly = np.asarray(line.poly, np.float64)
            if poly.shape != (4, 2):
                raise ValueError(
                    f"{type(self._detector).__name__}.detect returned a polygon of shape {poly.shape}, not [4, 2]"
                )
            # Detectors may grow boxes a little past the border; crops stay inside the image.
            jobs.append(_LineJob(index, np.clip(poly, 0.0, limits), None, None, float(line.score)))
        return "detector", jobs

    def _formats_in_play(self, job: _LineJob, options: ReadOptions) -> tuple[str, ...]:
        formats = self._config.formats if options.formats is None else options.formats
        if job.region_format is not None:
            formats = tuple(f for f in formats if f == job.region_format)
        return formats

    def _recognise(
        self,
        jobs: list[_LineJob],
        crops: list[np.ndarray],
        options: ReadOptions,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[LineRead]:
        if not crops:
            return []
        allowed = [self._formats_in_play(job, options) for job in jobs]
        min_confidence = options.min_confidence
        if min_confidence is None:
            min_confidence = self._config.min_confidence
        reads = self._decode(
            self._recognizer, self._config.model, jobs, crops, allowed, min_confidence, options, should_stop
        )
        if self._fallback is not None:
            # The cascade: re-read, with the second model, the lines the first is unsure of or out of format.
            unsure = [
                i
                for i, (read, formats) in enumerate(zip(reads, allowed, strict=True))
                if read.confidence < self._config.fallback_below or (formats and read.format is None)
            ]
            if unsure:
                again = self._decode(
                    self._fallback,
                    str(self._config.fallback),
                    [jobs[i] for i in unsure],
                    [crops[i] for i in unsure],
                    [allowed[i] for i in unsure],
                    min_confidence,
                    options,
                    should_stop,
                )
                for i, read in zip(unsure, again, strict=True):
                    reads[i] = read
        return reads

    def _decode(
        self,
        recognizer: OnnxRecognizer,
        model: str,
        jobs: list[_LineJob],
        crops: list[np.ndarray],
        allowed: list[tuple[str, ...]],
        min_confidence: float,
        options: ReadOptions,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[LineRead]:
        """One recogniser's reads of ``crops``: free, or under the formats in play for each line."""
        charset = recognizer.config.charset_obj
        matches: list[FormatMatch | None] = [None] * len(jobs)
        if self._matcher is not None and any(allowed):
            probs = recognizer.recognize_probs(crops)
            decoded = [recognizer.decode(p) for p in probs]
            for i, (line_probs, formats) in enumerate(zip(probs, allowed, strict=True)):
                _check(should_stop)
                if formats:
                    matches[i] = self._matcher.match(line_probs, charset, formats)
        else:
            decoded = recognizer.recognize(crops)
        reads = []
        for job, crop, free, match in zip(jobs, crops, decoded, matches, strict=True):
            if match is None:
                text, confidence, chars, name, format_ok = (
                    free.text,
                    free.confidence,
                    free.char_confidences,
                    None,
                    True,
                )
            else:
                text, confidence, chars = match.text, match.confidence, match.char_confidences
                name, format_ok = match.format_name, match.valid
            reads.append(
                LineRead(
                    text=text,
                    confidence=float(confidence),
                    char_confidences=tuple(float(c) for c in chars),
                    poly=_as_points(job.poly),
                    format=name,
                    valid=bool(text) and format_ok and confidence >= min_confidence,
                    raw_text=free.text,
                    region=job.region,
                    detection_score=job.detection_score,
                    model=model,
                    crop=crop if options.return_crops else None,
                )
            )
        return reads


def _region_jobs(regions: Sequence[Region], image: np.ndarray, index: int, source: str) -> list[_LineJob]:
    """One job per region of ``image``; a region reaching past the image is an ImageError naming it."""
    height, width = image.shape[:2]
    jobs = []
    for region in regions:
        poly = region.polygon(width, height)
        if (poly[:, 0] > width + 1e-6).any() or (poly[:, 1] > height + 1e-6).any():
            raise ImageError(
                f"{source}: region {region.name or '(unnamed)'} {poly.tolist()} extends beyond "
                f"the {width}x{height} image"
            )
        jobs.append(_LineJob(index, poly, region.name, region.format, None, region.preprocess))
    return jobs
