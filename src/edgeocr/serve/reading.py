"""How the service turns one request into reads: its options, the shared readers, the decoding.

Readers are immutable and thread-safe (see :mod:`edgeocr.runtime.reader`), so the service builds
them once and shares them between requests; a request's choices become a :class:`ReadPlan` (which
reader, which :class:`~edgeocr.runtime.reader.ReadOptions`), never a change to a reader:

* **formats**: a subset of the configured formats is a ``ReadOptions.formats`` on the shared
  reader; other format specs are compiled (a bad one is a 422 naming its position) and read by a
  reader built for exactly those formats, kept in a small least-recently-used cache;
* **regions**: rectangles (or four-point quads) given in the request, in pixels or relative to
  the image, read by :meth:`~edgeocr.runtime.reader.Reader.read_regions`: the Reader's own crop
  (:func:`edgeocr.core.crops.crop_line`) and region path, so a request reads exactly what a reader
  configured with those regions reads; each region with its own format if it names one;
* **detector** on/off: the detector reader, or the whole-image reader (the image is one line);
  absent, the service's mode, by default 'auto': a reader that reads each crop-shaped image whole
  and detects the lines of any other (each image's result says which was done).

Everything here that costs CPU (decoding, building a reader, reading) runs in the service's
inference threads, never on the event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.core.formats import compile_format
from edgeocr.core.images import check_encoded_size, decode_image
from edgeocr.runtime.build import build_line_detector
from edgeocr.runtime.engines import engine_config
from edgeocr.runtime.reader import LineDetector, Reader, ReaderConfig, ReadOptions
from edgeocr.runtime.reader import Region as ReaderRegion
from edgeocr.runtime.results import ImageResult
from edgeocr.serve.errors import RequestError, clip
from edgeocr.serve.settings import ServeSettings

MAX_REQUEST_FORMATS = 16
MAX_REQUEST_REGIONS = 64
MAX_NAME_CHARS = 100
FormatSpec = Annotated[str, StringConstraints(min_length=1, max_length=200)]
RegionName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
PlanMode = Literal["auto", "whole", "detector", "regions"]
_DETECTING = ("auto", "detector")  # the plan modes that need the service's detector


class Region(ReaderRegion):
    """A region of a request: a :class:`~edgeocr.runtime.reader.Region` without ``preprocess`` (named Region too,
    so that the API's schema keeps its name).

    Preprocessing is the service's configuration, never a request's: a pipeline spec may be YAML, and
    YAML with aliases expands a few kB into gigabytes. The field is refused before anything parses it.
    """

    name: RegionName | None = Field(default=None, description="Name reported with the line read here (e.g. 'lot').")
    format: FormatSpec | None = Field(
        default=None, description="The format expected in this region (one of the formats in play); None: any."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_preprocess(cls, data: Any) -> Any:
        if isinstance(data, dict) and "preprocess" in data:
            raise ValueError(
                "'preprocess' is not accepted in a request: preprocessing is the service's own configuration"
            )
        return data


class ReadRequestOptions(BaseModel):
    """Per-request choices of POST /v1/read and /v1/read/batch (all optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    formats: tuple[FormatSpec, ...] | None = Field(
        default=None,
        max_length=MAX_REQUEST_FORMATS,
        description=(
            "Formats in play (edgeocr format specs such as 'LOT [A-Z0-9]{7}', 'EXP {MM}/{YYYY}', 'iso6346'): "
            "the configured ones or new ones; []: free text; absent: the service's formats."
        ),
    )
    regions: tuple[Region, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REQUEST_REGIONS,
        description=(
            "Regions of interest, each read as one line: {rect: [x, y, w, h]} or {quad: [[x, y] x 4]}, "
            "units 'pixels' (default) or 'relative', optional name and format (no preprocess: that is the "
            "service's). Replaces line detection."
        ),
    )
    detector: bool | None = Field(
        default=None,
        description=(
            "true: find the lines with the service's detector; false: the whole image is one line; "
            "absent: the service's mode (by default 'auto': an image shaped like a line crop is read whole, "
            "any other goes through the detector). Cannot be true together with regions."
        ),
    )
    min_confidence: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Lines whose weakest character is below this are not valid."
    )


DEFAULT_REQUEST_OPTIONS = ReadRequestOptions()


@dataclass(frozen=True)
class ReadPlan:
    """How one request is read: by which reader (mode and formats) and with which per-call options."""

    mode: PlanMode
    formats: tuple[str, ...] | None  # formats needing their own reader; None: the shared readers'
    options: ReadOptions
    regions: tuple[Region, ...] = ()

    @property
    def reader_mode(self) -> Literal["auto", "whole", "detector"]:
        """Regions are cut out here and read as whole-image lines."""
        return "whole" if self.mode == "regions" else self.mode


def _invalid(message: str) -> RequestError:
    return RequestError(422, "invalid_options", message)


class ReaderPool:
    """The service's readers: built once, shared by every request, plus a small cache for new formats."""

    def __init__(self, settings: ServeSettings, detector: LineDetector | None = None) -> None:
        self.settings = settings
        self.engine = engine_config(settings.device, settings.engine, settings.engine_threads)
        if detector is None and settings.has_detector:
            detector = build_line_detector(settings.detector_spec, self.engine)
        if detector is None and settings.mode in _DETECTING:
            raise EdgeOCRError(f"mode {settings.mode!r} needs a detector")
        self.detector = detector
        self._config = ReaderConfig(
            model=settings.model,
            engine=self.engine,
            mode="whole",
            formats=settings.formats,
            min_confidence=settings.min_confidence,
            max_pixels=settings.max_pixels,
            fallback=settings.fallback,
            fallback_below=settings.fallback_below,
        )
        self._shared = {"whole": Reader(self._config)}
        if detector is not None:
            self._shared["detector"] = self._build("detector", settings.formats)
        if settings.mode == "auto":  # only requests that leave 'detector' out read in auto mode
            self._shared["auto"] = self._build("auto", settings.formats)
        self._custom: OrderedDict[tuple[str, tuple[str, ...]], Reader] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def recognizer(self):
        """The recogniser of the shared whole-image reader (its sidecar names the model)."""
        return self._shared["whole"].recognizer

    def _build(self, mode: str, formats: tuple[str, ...]) -> Reader:
        config = self._config.model_copy(update={"mode": mode, "formats": formats})
        return Reader(config, detector=self.detector if mode in _DETECTING else None)

    def reader(self, plan: ReadPlan) -> Reader:
        """The reader for ``plan``; building a reader for new formats takes a few tens of ms (blocking)."""
        mode = plan.reader_mode
        if plan.formats is None:
            return self._shared[mode]
        key = (mode, plan.formats)
        with self._lock:  # one build per key even when many requests ask for it at once
            reader = self._custom.get(key)
            if reader is None:
                reader = self._build(mode, plan.formats)
                if self.settings.reader_cache_size > 0:
                    self._custom[key] = reader
                    while len(self._custom) > self.settings.reader_cache_size:
                        self._custom.popitem(last=False)
            else:
                self._custom.move_to_end(key)
            return reader

    def plan(self, request: ReadRequestOptions) -> ReadPlan:
        """Check ``request`` against the service and choose reader and options; RequestError (422) if it cannot."""
        if request.regions is not None and request.detector:
            raise _invalid("regions are read as given: 'detector' cannot be true together with 'regions'")
        mode: PlanMode
        if request.regions is not None:
            mode = "regions"
        elif request.detector is None:
            mode = self.settings.mode
        else:
            mode = "detector" if request.detector else "whole"
        if mode in _DETECTING and self.detector is None:
            raise _invalid("this service has no detector (start it with --detector); send detector: false")
        configured = self.settings.formats
        in_play = configured if request.formats is None else request.formats
        if len(set(in_play)) != len(in_play):
            raise _invalid(clip(f"formats are listed more than once: {list(in_play)}", 300))
        own_formats = None
        option_formats = request.formats
        if request.formats is not None and not set(request.formats) <= set(configured):
            for spec in request.formats:
                try:
                    compile_format(spec)
                except EdgeOCRError as exc:  # a bad or too large pattern, refused before any automaton is built
                    raise _invalid(f"format {clip(spec, 80)!r}: {exc}") from None
            own_formats, option_formats = request.formats, None
        for region in request.regions or ():
            if region.format is not None and region.format not in in_play:
                raise _invalid(
                    f"region {region.name or '(unnamed)'} expects format {clip(region.format, 80)!r}, "
                    f"which is not among the formats in play {clip(str(list(in_play)), 200)}"
                )
        options = ReadOptions(formats=option_formats, min_confidence=request.min_confidence)
        return ReadPlan(mode=mode, formats=own_formats, options=options, regions=request.regions or ())

    def read(
        self, plan: ReadPlan, images: Sequence[np.ndarray], should_stop: Callable[[], bool] | None = None
    ) -> list[ImageResult]:
        """The result of each decoded image under ``plan`` (blocking; run it in an inference thread): its lines,
        and in ``mode`` how they were found ('whole', 'detector' or 'roi'; per image in plan mode 'auto').
        ``should_stop``: checked between images and lines (the request's time limit cancels the work)."""
        reader = self.reader(plan)
        if plan.mode != "regions":
            return reader.read_batch(images, options=plan.options, should_stop=should_stop)
        try:  # the Reader's own region path: the same crops and reads as a reader in mode 'roi'
            return reader.read_regions(images, plan.regions, options=plan.options, should_stop=should_stop)
        except (ImageError, ValueError) as exc:  # a region past the image, a preprocess the service lacks
            raise RequestError(422, "invalid_options", str(exc)) from None


def _too_large(message: str) -> RequestError:
    return RequestError(413, "image_too_large", message)


def check_uploads(payloads: Sequence[tuple[str, bytes]], max_pixels: int, budget: int) -> list[tuple[int, int]]:
    """The (width, height) of each upload from its header alone, before anything is decoded: 400 when the
    format is not accepted or its header gives no size, 413 when an image is over ``max_pixels`` or all of
    them together over the request's pixel ``budget``."""
    sizes = []
    for name, data in payloads:
        if not data:
            raise RequestError(400, "bad_image", f"{name}: empty image data")
        try:
            _, width, height = check_encoded_size(data, name, None)
        except ImageError as exc:
            raise RequestError(400, "bad_image", str(exc)) from None
        if width * height > max_pixels:
            raise _too_large(
                f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} megapixels, over this "
                f"service's limit of {max_pixels / 1e6:.1f} megapixels"
            )
        sizes.append((width, height))
    total = sum(w * h for w, h in sizes)
    if total > budget:
        raise RequestError(
            413,
            "too_many_pixels",
            f"the {len(sizes)} images of this request hold {total / 1e6:.1f} megapixels in all, over this "
            f"service's limit of {budget / 1e6:.1f} megapixels per request; send fewer or smaller images",
        )
    return sizes


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image: 413 when it has too many pixels (from its header, before decoding), 400 when it
    is not a decodable image in an accepted format."""
    check_uploads([(name, data)], max_pixels, max_pixels)
    try:
        return decode_image(data, name, max_pixels=max_pixels)
    except ImageError as exc:
        raise RequestError(400, "bad_image", str(exc)) from None
