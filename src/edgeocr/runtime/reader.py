"""Read the text lines of whole images: locate lines, crop them upright, recognise them in batches.

A :class:`Reader` is built once from a frozen :class:`ReaderConfig` and is then **immutable and
thread-safe**: it holds no per-call state, so one instance serves many threads (ONNX Runtime's
``InferenceSession.run`` is thread-safe, and the detector and format matcher it is given must
be too). Per-call choices go in a frozen :class:`ReadOptions`, never into the reader.

Lines are located in one of three modes:

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

Line crops come from :func:`_crop_quad`, a private perspective warp, until
``edgeocr.core.crops.crop_line`` is available. Each crop then goes through the configured
preprocessing pipeline (``ReaderConfig.preprocess``, or a region's own ``Region.preprocess``;
:mod:`edgeocr.core.preprocess`), built once per reader and immutable, before the recogniser's
own resize and normalisation (those stay the model's, from its sidecar).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeocr.core.charset import Charset
from edgeocr.core.formats import FormatSet, compile_format, decode_constrained
from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.core.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source, load_image
from edgeocr.core.preprocess import Normalize, Pipeline, PipelineError, parse_pipeline
from edgeocr.runtime.models import resolve_model
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

DetectionMode = Literal["roi", "detector", "whole"]

# --- protocols: what the reader needs from a detector and from a format matcher ------------------


@dataclass(frozen=True, eq=False)
class DetectedLine:
    """One text line found by a detector.

    ``poly``: float32 ``[4, 2]`` corners (x, y) in image pixels, in reading order: top-left,
    top-right, bottom-right, bottom-left of the text (so a line printed upside down has its
    "top-left" at the bottom right of the box). ``score``: the detector's confidence in [0, 1].
    ``angle``: degrees of the top edge against the x axis (positive: turned clockwise on screen).
    """

    poly: np.ndarray
    score: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        poly = np.asarray(self.poly, dtype=np.float32)
        if poly.shape != (4, 2) or not np.isfinite(poly).all():
            raise ValueError(f"a detected line needs 4 finite (x, y) corners, got shape {poly.shape}")
        object.__setattr__(self, "poly", poly)
        object.__setattr__(self, "score", float(self.score))


@runtime_checkable
class LineDetector(Protocol):
    """Finds text lines in an image. ``detect`` must be safe to call from several threads."""

    def detect(self, image: np.ndarray) -> Sequence[DetectedLine]:
        """Lines of a uint8 BGR ``[H, W, 3]`` or gray ``[H, W]`` image, in reading order."""
        ...


@dataclass(frozen=True)
class FormatMatch:
    """A line read under a format's constraints.

    ``text``/``confidence``/``char_confidences`` as in :class:`~edgeocr.core.ctc.DecodedLine`;
    ``format_name``: the format that matched, None when none did; ``valid``: the text matches
    that format and passes its checks (check digits, date ranges...).
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    format_name: str | None
    valid: bool


@runtime_checkable
class FormatMatcher(Protocol):
    """Decodes a line's per-frame probabilities under a set of formats. Must be thread-safe."""

    def match(self, probs: np.ndarray, charset: Charset, allowed: Sequence[str]) -> FormatMatch:
        """Best reading of ``probs`` (float64 ``[T, C]``, softmax) among the ``allowed`` format names."""
        ...


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
    quad: tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]] | None = (
        Field(
            default=None,
            description=(
                "Four (x, y) corners of a tilted or perspective line, in reading order: top-left, "
                "top-right, bottom-right, bottom-left of the text; give rect or quad."
            ),
        )
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
                raise ValueError(
                    f"relative rect {self.rect} extends beyond the image (x + w and y + h must be <= 1)"
                )
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


class ReaderConfig(BaseModel):
    """Everything a :class:`Reader` is built from. Frozen: a reader's behaviour never changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="default",
        min_length=1,
        description="Recogniser: the name of a shipped model or the path of an exported .onnx file.",
    )
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description="How ONNX Runtime runs the recogniser: threads, providers, batch size, decoder.",
    )
    mode: DetectionMode = Field(
        default="whole",
        description=(
            "How lines are located: 'roi' (the fixed regions below), 'detector' (a LineDetector "
            "passed to the Reader) or 'whole' (the whole image is one line)."
        ),
    )
    regions: tuple[Region, ...] = Field(
        default=(), description="The fixed line regions read in 'roi' mode, in output order."
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Lines whose confidence (the weakest character's) is below this are reported as not valid."
        ),
    )
    formats: tuple[str, ...] = Field(
        default=(),
        description=(
            "Names of the formats lines may take (compiled by edgeocr.core.formats); empty: free text."
        ),
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
            "Input images with more pixels are refused before decoding (decompression-bomb guard); "
            "None: no limit."
        ),
    )

    @field_validator("model", mode="before")
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
        description=(
            "Formats in play for this call, a subset of ReaderConfig.formats; None: all; (): free text."
        ),
    )
    regions: tuple[str, ...] | None = Field(
        default=None, description="In 'roi' mode, read only the regions with these names; None: all."
    )
    return_crops: bool = Field(
        default=False,
        description="Attach each line's upright crop, as preprocessed and fed to the recogniser, to its LineRead.",
    )


DEFAULT_OPTIONS = ReadOptions()

# --- results -------------------------------------------------------------------------------------

Point = tuple[float, float]


@dataclass(frozen=True)
class LineRead:
    """One text line read from an image.

    ``text``: the reading (under the matched format when formats are in play); ``raw_text``: the
    free reading without format constraints. ``confidence`` is the weakest character's.
    ``poly``: the line's corners (x, y) in the input image (after EXIF orientation), reading
    order top-left, top-right, bottom-right, bottom-left. ``format``: the matched format's name.
    ``valid``: the text is non-empty, its confidence reaches the minimum and, when formats are in
    play, it matches one. ``region``: the ROI's name ('roi' mode). ``detection_score``: the
    detector's score ('detector' mode), else None. ``crop``: the upright line crop after
    preprocessing (what the recogniser saw) when ``ReadOptions.return_crops`` was set (not part
    of equality).
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    poly: tuple[Point, Point, Point, Point]
    format: str | None
    valid: bool
    raw_text: str
    region: str | None = None
    detection_score: float | None = None
    crop: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of everything but the crop."""
        return {
            "text": self.text,
            "confidence": self.confidence,
            "char_confidences": list(self.char_confidences),
            "poly": [list(p) for p in self.poly],
            "format": self.format,
            "valid": self.valid,
            "raw_text": self.raw_text,
            "region": self.region,
            "detection_score": self.detection_score,
        }


# --- geometry ------------------------------------------------------------------------------------


_HALF_PIXEL_FORWARD = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
_HALF_PIXEL_BACK = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])


def _crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quadrilateral ``quad`` (tl, tr, br, bl) of ``image`` warped to an upright rectangle.

    The output is as wide as the longer of the top and bottom edges and as tall as the longer of
    the side edges. An integer axis-aligned rectangle inside the image is sliced (identical to
    the warp, which maps output pixel (i, j) to input pixel (x + i, y + j), but cheaper).
    Private stand-in for ``edgeocr.core.crops.crop_line``.
    """
    quad = np.asarray(quad, np.float64)
    top, bottom = np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])
    left, right = np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])
    width, height = max(1, round(max(top, bottom))), max(1, round(max(left, right)))
    x0, y0 = quad[0]
    rect = np.array([[x0, y0], [x0 + width, y0], [x0 + width, y0 + height], [x0, y0 + height]])
    image_h, image_w = image.shape[:2]
    if (
        np.array_equal(quad, rect)
        and float(x0).is_integer()
        and float(y0).is_integer()
        and x0 >= 0
        and y0 >= 0
        and x0 + width <= image_w
        and y0 + height <= image_h
    ):
        return image[int(y0) : int(y0) + height, int(x0) : int(x0) + width].copy()
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    transform = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    # Corners are pixel edges (pixel i spans [i, i + 1)) but OpenCV puts pixel i's centre at i:
    # shift by half a pixel on both sides so that e.g. a 90-degree turn maps pixels exactly.
    transform = _HALF_PIXEL_BACK @ transform @ _HALF_PIXEL_FORWARD
    return cv2.warpPerspective(
        image, transform, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


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
        return FormatMatch(text=read.text, confidence=read.confidence, char_confidences=read.char_confidences,
                           format_name=read.format_name, valid=read.valid)


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


class Reader:
    """Reads text lines from images. Immutable; ``read``/``read_batch`` may run in many threads at once."""

    __slots__ = ("_config", "_recognizer", "_detector", "_matcher", "_charset", "_pipelines")

    def __init__(
        self,
        config: ReaderConfig | None = None,
        *,
        detector: LineDetector | None = None,
        format_matcher: FormatMatcher | None = None,
    ) -> None:
        config = config or ReaderConfig()
        if config.mode == "detector" and detector is None:
            raise EdgeOCRError(
                "mode 'detector' needs a detector: pass detector=... (e.g. "
                "edgeocr.runtime.rapidocr_detector.RapidOCRDetector())"
            )
        if config.mode != "detector" and detector is not None:
            raise ValueError(f"a detector was given but the mode is {config.mode!r}, which would ignore it")
        if detector is not None and not isinstance(detector, LineDetector):
            raise TypeError(f"{type(detector).__name__} has no detect(image) method")
        if config.formats and format_matcher is None:
            format_matcher = CompiledFormats(config.formats)
        if format_matcher is not None and not config.formats:
            raise ValueError("a format_matcher was given but ReaderConfig.formats is empty")
        engine = config.engine
        if config.mode == "detector":  # two sessions take turns: see EngineConfig.spin_wait
            engine = replace(engine, spin_wait=False)
        recognizer = OnnxRecognizer(resolve_model(config.model), engine)
        # Pipelines are frozen and their ops keep no state between calls: safe to share across threads.
        specs = [config.preprocess, *(r.preprocess for r in config.regions if r.preprocess is not None)]
        pipelines = MappingProxyType({spec: line_pipeline(spec) for spec in specs})
        for name, value in (
            ("_config", config),
            ("_recognizer", recognizer),
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
        """The line detector of 'detector' mode, else None."""
        return self._detector

    # -- public API --

    def read(self, image: ImageSource, *, options: ReadOptions | None = None) -> list[LineRead]:
        """The lines of one image (any input :func:`edgeocr.core.images.load_image` accepts)."""
        return self.read_batch([image], options=options)[0]

    def read_batch(
        self, images: Sequence[ImageSource], *, options: ReadOptions | None = None
    ) -> list[list[LineRead]]:
        """The lines of each image; all line crops of all images are recognised in shared batches.

        An image that cannot be loaded raises :class:`ImageError` naming it (for the whole call).
        """
        if isinstance(images, (np.ndarray, str, bytes, bytearray, memoryview, os.PathLike)):
            raise TypeError("read_batch takes a sequence of images; use read() for a single image")
        images = list(images)  # iterated twice below; a generator is fine too
        options = options or DEFAULT_OPTIONS
        self._check_options(options)
        jobs: list[_LineJob] = []
        crops: list[np.ndarray] = []
        for index, source in enumerate(images):
            image = load_image(source, max_pixels=self._config.max_pixels)
            for job in self._locate(image, index, options, describe_source(source)):
                jobs.append(job)
                pipeline = self._pipelines[job.region_preprocess or self._config.preprocess]
                crops.append(pipeline.apply(_crop_quad(image, job.poly)))
        lines = self._recognise(jobs, crops, options)
        results: list[list[LineRead]] = [[] for _ in images]
        for job, line in zip(jobs, lines, strict=True):
            results[job.image_index].append(line)
        return results

    # -- steps --

    def _check_options(self, options: ReadOptions) -> None:
        if options.formats is not None:
            unknown = [f for f in options.formats if f not in self._config.formats]
            if unknown:
                raise ValueError(
                    f"ReadOptions.formats {unknown} are not among the reader's formats "
                    f"{list(self._config.formats)}"
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

    def _locate(self, image: np.ndarray, index: int, options: ReadOptions, source: str) -> list[_LineJob]:
        height, width = image.shape[:2]
        mode = self._config.mode
        if mode == "whole":
            whole = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
            return [_LineJob(index, whole, None, None, None)]
        if mode == "roi":
            jobs = []
            for region in self._config.regions:
                if options.regions is not None and region.name not in options.regions:
                    continue
                poly = region.polygon(width, height)
                if (poly[:, 0] > width + 1e-6).any() or (poly[:, 1] > height + 1e-6).any():
                    raise ImageError(
                        f"{source}: region {region.name or '(unnamed)'} {poly.tolist()} extends beyond "
                        f"the {width}x{height} image"
                    )
                jobs.append(_LineJob(index, poly, region.name, region.format, None, region.preprocess))
            return jobs
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
        return jobs

    def _formats_in_play(self, job: _LineJob, options: ReadOptions) -> tuple[str, ...]:
        formats = self._config.formats if options.formats is None else options.formats
        if job.region_format is not None:
            formats = tuple(f for f in formats if f == job.region_format)
        return formats

    def _recognise(
        self, jobs: list[_LineJob], crops: list[np.ndarray], options: ReadOptions
    ) -> list[LineRead]:
        if not crops:
            return []
        allowed = [self._formats_in_play(job, options) for job in jobs]
        min_confidence = options.min_confidence
        if min_confidence is None:
            min_confidence = self._config.min_confidence
        matches: list[FormatMatch | None] = [None] * len(jobs)
        if self._matcher is not None and any(allowed):
            probs = self._recognizer.recognize_probs(crops)
            decoded = [self._recognizer.decode(p) for p in probs]
            for i, (line_probs, formats) in enumerate(zip(probs, allowed, strict=True)):
                if formats:
                    matches[i] = self._matcher.match(line_probs, self._charset, formats)
        else:
            decoded = self._recognizer.recognize(crops)
        reads = []
        for job, crop, free, match in zip(jobs, crops, decoded, matches, strict=True):
            if match is None:
                text, confidence, chars, name, format_ok = (
                    free.text, free.confidence, free.char_confidences, None, True
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
                    crop=crop if options.return_crops else None,
                )
            )
        return reads
