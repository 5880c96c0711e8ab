"""The HTTP service: ``create_app(ServeSettings(...))`` returns a FastAPI app (run it with uvicorn).

Endpoints: ``POST /v1/read`` (one image: multipart field ``image``, or JSON ``{"image": base64}``),
``POST /v1/read/batch`` (multipart fields ``images``, or JSON ``{"images": [base64, ...]}``; all
lines of all images share recogniser batches), both with optional ``options``
(:class:`~edgeocr.serve.reading.ReadRequestOptions`: formats, regions, detector on/off); ``GET
/health``; ``GET /metrics`` (Prometheus); ``GET /`` (the web page); ``/docs`` and
``/openapi.json``.

Design:

* The readers are built once, when the app is created, and shared by all requests (they are
  immutable and thread-safe); request options never change them (see :mod:`edgeocr.serve.reading`).
* **Budgets before work.** Bodies over ``max_body_bytes`` are refused with 413 from their
  Content-Length, before they are read, or as soon as a streamed body crosses the limit; all
  requests together hold at most ``max_bodies_bytes`` of bodies (a request waits for room, then
  gets 503). A JSON body (or multipart ``options`` field) is measured before it is parsed: more
  than :data:`MAX_JSON_TOKENS` separators or nesting deeper than :data:`MAX_JSON_DEPTH` is a 413,
  so a million keys never become a million Python objects and a million pydantic errors. Images
  must be in an accepted format and their headers are read before anything is decoded: one over
  ``max_pixels``, or all of a request's over its pixel budget, is a 413. Request regions carry no
  ``preprocess`` (no YAML from requests); formats are refused at compile time when their automaton
  would be too large; error messages are clipped and never echo a request's data at length.
* Decoding and inference run in a pool of ``max_concurrent_inferences`` threads, so the event loop
  never blocks and at most that many inferences run at once. A body that has not arrived within
  ``body_timeout_s`` gets 408; a request not answered within ``request_timeout_s`` gets 504, its
  queued work is dropped and its running work is **cancelled**: it stops at its next image or
  line (``Reader.read_batch(should_stop=...)``), so no abandoned work keeps a thread busy.
* Headers: see :mod:`edgeocr.serve.protocol` (size, time and connection limits in uvicorn).
* Every failure answers ``{"error": {"code": ..., "message": ...}}`` with a 4xx status (5xx for a
  fault of the service, which is logged and keeps serving).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeocr import __version__
from edgeocr.core.errors import ImageError
from edgeocr.core.formats import FormatError
from edgeocr.core.images import decode_image
from edgeocr.runtime.reader import LineDetector, ReadCancelled
from edgeocr.runtime.results import ImageResult as ReadResult
from edgeocr.serve.errors import DEFAULT_CODES, RequestError, clip, error_body
from edgeocr.serve.metrics import MetricsMiddleware, ServiceMetrics
from edgeocr.serve.reading import DEFAULT_REQUEST_OPTIONS, ReaderPool, ReadPlan, ReadRequestOptions, check_uploads
from edgeocr.serve.settings import SETTINGS_ENV, ServeSettings

logger = logging.getLogger("edgeocr.serve")
T = TypeVar("T")

IMAGE_FIELD, IMAGES_FIELD, OPTIONS_FIELD = "image", "images", "options"
_DATA_URL_MARK = ";base64,"
_INLINE_JSON_BYTES = 64 * 1024  # larger JSON bodies are parsed in a worker thread
#: Separators and openings (``,`` ``:`` ``[`` ``{``) a JSON body may hold, counted before parsing (strings
#: included: base64 has none). The largest valid request (64 regions with quads, 16 formats) needs under 3,000.
MAX_JSON_TOKENS = 20_000
#: Brackets nested in a JSON body, counted before parsing (a valid request nests 5 deep).
MAX_JSON_DEPTH = 32
MAX_OPTIONS_CHARS = 64 * 1024  # the multipart ``options`` text field
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


# --- request and response bodies (JSON) ----------------------------------------------------------


class ReadJSON(BaseModel):
    """JSON body of POST /v1/read."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="The encoded image (PNG, JPEG, ...) in base64, or a data: URL.")
    options: ReadRequestOptions = Field(default=DEFAULT_REQUEST_OPTIONS, description="Per-request choices.")


class BatchReadJSON(BaseModel):
    """JSON body of POST /v1/read/batch."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(min_length=1, description="Encoded images in base64 (or data: URLs), in order.")
    options: ReadRequestOptions = Field(default=DEFAULT_REQUEST_OPTIONS, description="Applies to every image.")


class LineOut(BaseModel):
    """One line read."""

    text: str = Field(description="The reading (under the matched format when formats are in play).")
    raw_text: str = Field(description="The free reading, without format constraints.")
    confidence: float = Field(description="The weakest character's confidence, in [0, 1].")
    char_confidences: list[float] = Field(description="Each character's confidence.")
    poly: list[list[float]] = Field(
        description="Corners [x, y] in the image: top-left, top-right, bottom-right, bottom-left of the text."
    )
    format: str | None = Field(description="The matched format, None when none matched or none was in play.")
    valid: bool = Field(description="Non-empty, confident enough and, with formats in play, matching one.")
    region: str | None = Field(description="The region's name (requests with regions).")
    detection_score: float | None = Field(description="The detector's score (detector mode).")


class ImageResult(BaseModel):
    """The lines of one image."""

    width: int = Field(description="Image width in pixels (after EXIF orientation).")
    height: int = Field(description="Image height in pixels.")
    mode: str = Field(
        description=(
            "How this image's lines were found: whole, detector or regions (in auto mode, which of whole and "
            "detector was done for this image)."
        )
    )
    lines: list[LineOut] = Field(description="The lines, in reading order (regions: in request order).")


class Timing(BaseModel):
    """Where the request's time went, in milliseconds."""

    queue: float = Field(description="Waiting for an inference thread.")
    decode: float = Field(description="Decoding the image(s).")
    read: float = Field(description="Locating and recognising the lines.")
    total: float = Field(description="From the request reaching the endpoint to the answer.")


class ReadResponse(ImageResult):
    """Answer of POST /v1/read."""

    model: str = Field(description="The recogniser the service runs.")
    mode: str = Field(
        description=(
            "How lines were found: whole, detector or regions (in auto mode, which of whole and detector was "
            "done for this image)."
        )
    )
    timing_ms: Timing


class BatchReadResponse(BaseModel):
    """Answer of POST /v1/read/batch."""

    model: str = Field(description="The recogniser the service runs.")
    mode: str = Field(
        description=(
            "How the request's lines were to be found: auto, whole, detector or regions; in auto mode each "
            "result's mode says what was done for its image."
        )
    )
    results: list[ImageResult] = Field(description="One result per image, in request order.")
    timing_ms: Timing


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. bad_image, image_too_large, timeout.")
    message: str = Field(description="What was wrong, for a person.")


class ErrorResponse(BaseModel):
    """Body of every error answer."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Not a decodable image, bad base64 or malformed body."),
        (408, "The body did not arrive within the body time limit."),
        (413, "Body, JSON structure, image (pixels), batch or a request's pixels in all too large."),
        (415, "Neither multipart/form-data nor application/json."),
        (422, "Missing field or invalid options."),
        (503, "The service holds as many request bodies as it may; try again."),
        (504, "Not answered within the request time limit (the work is cancelled)."),
    )
}


# --- middleware and errors -----------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status)


class ByteBudget:
    """Bytes shared by all requests of one process: each reserves its share before its body is read.

    Thread-safe and bound to no event loop (a test client may run each request on a loop of its own);
    a request that finds no room polls for it every few milliseconds until its time is up."""

    def __init__(self, total: int, metrics: ServiceMetrics | None = None) -> None:
        self.total = total
        self.used = 0
        self.metrics = metrics
        self._lock = threading.Lock()

    def _take(self, size: int) -> bool:
        with self._lock:
            if self.used + size > self.total:
                return False
            self.used += size
            used = self.used
        if self.metrics is not None:
            self.metrics.body_bytes_held.set(used)
        return True

    async def reserve(self, size: int, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``size`` bytes of room; False when there was none."""
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while not self._take(size):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(0.05, 2 * delay)
        return True

    def release(self, size: int) -> None:
        with self._lock:
            self.used -= size
            used = self.used
        if self.metrics is not None:
            self.metrics.body_bytes_held.set(used)


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: from Content-Length before reading, or while a streamed body arrives.
    With a ``budget``, a request that may carry a body first reserves its Content-Length (``max_bytes`` when it
    has none) and waits up to ``wait_s`` for room; 503 when none came."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        budget: ByteBudget | None = None,
        wait_s: float = 10.0,
        max_header_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget
        self.wait_s = wait_s
        self.max_header_bytes = max_header_bytes

    def _too_large(self) -> RequestError:
        return RequestError(
            413, "payload_too_large", f"request body over this service's limit of {self.max_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.max_header_bytes is not None:
            # h11 bounds headers that arrive in pieces; a block that arrives whole is measured here.
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_header_bytes:
                message = (
                    f"request line and headers of {size} bytes, over this service's limit of {self.max_header_bytes}"
                )
                await _error(431, "headers_too_large", message)(scope, receive, send)
                return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await _error(400, "bad_request", "malformed Content-Length header")(scope, receive, send)
                return
            if too_large:
                error = self._too_large()
                await _error(error.status, error.code, error.message)(scope, receive, send)
                return
        reserved = 0
        if self.budget is not None and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            reserved = self.max_bytes if declared is None else int(declared)
            if reserved and not await self.budget.reserve(reserved, self.wait_s):
                answer = _error(
                    503,
                    "busy",
                    f"the service holds as many request bodies as it may ({self.budget.total} bytes); try again",
                )
                answer.headers["Retry-After"] = "1"
                await answer(scope, receive, send)
                return
        try:
            await self._limited(scope, receive, send)
        finally:
            if reserved:
                self.budget.release(reserved)  # type: ignore[union-attr]

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()  # answered by the RequestError handler
            return message

        await self.app(scope, limited_receive, send)


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    parts = []
    errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) else exc.errors()
    for error in errors[:5]:
        where = ".".join(clip(str(p), 40) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {clip(str(error.get('msg')), 200)}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "; ".join(parts)


def check_json_shape(body: bytes, where: str = "the body") -> None:
    """413 when JSON ``body`` holds too many separators or nests too deep, measured before it is parsed."""
    tokens = body.count(b",") + body.count(b":") + body.count(b"[") + body.count(b"{")
    if tokens > MAX_JSON_TOKENS:
        raise RequestError(
            413,
            "json_too_complex",
            f"{where} holds {tokens} JSON separators and openings, over this service's limit of {MAX_JSON_TOKENS} "
            "(a read request needs a few dozen)",
        )
    depth = deepest = 0
    for char in body.translate(None, _NOT_BRACKETS):  # brackets only: at most MAX_JSON_TOKENS openings
        depth += 1 if char in b"[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise RequestError(
            413, "json_too_complex", f"{where} nests {deepest} deep, over this service's limit of {MAX_JSON_DEPTH}"
        )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(DEFAULT_CODES.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def server_fault(_: Request, exc: Exception) -> JSONResponse:  # the last resort: log, answer, go on
        logger.error("unhandled error", exc_info=exc)
        return _error(500, "internal_error", f"the service failed on this request ({type(exc).__name__})")


# --- parsing requests ----------------------------------------------------------------------------


def _base64_image(text: str, where: str) -> bytes:
    if text.startswith("data:") and _DATA_URL_MARK in text[:200]:
        text = text.split(_DATA_URL_MARK, 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, "bad_base64", f"{where}: not valid base64 ({exc})") from None


def _options_from_text(text: str) -> ReadRequestOptions:
    if len(text) > MAX_OPTIONS_CHARS:
        raise RequestError(
            413,
            "json_too_complex",
            f"'{OPTIONS_FIELD}' is {len(text)} characters, over the limit of {MAX_OPTIONS_CHARS}",
        )
    check_json_shape(text.encode(), f"'{OPTIONS_FIELD}'")
    try:
        return ReadRequestOptions.model_validate_json(text)
    except ValidationError as exc:
        raise RequestError(422, "invalid_options", f"options: {_validation_message(exc)}") from None


async def _parse_multipart(request: Request, field: str, limit: int) -> tuple[list[tuple[str, bytes]], Any]:
    # The file count is checked here (413), so the parser's own guard is only a backstop.
    async with request.form(max_files=limit + 64, max_fields=64) as form:
        unknown = sorted(set(form.keys()) - {field, OPTIONS_FIELD})
        if unknown:
            raise RequestError(
                422,
                "invalid_request",
                f"unknown form field(s) {unknown}; expected '{field}' and optionally '{OPTIONS_FIELD}'",
            )
        parts = form.getlist(field)
        if not parts:
            raise RequestError(422, "missing_field", f"no '{field}' file field in the form")
        if len(parts) > limit:
            raise _too_many(len(parts), limit)
        images = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise RequestError(422, "invalid_request", f"form field '{field}' must be a file upload")
            name = f"{field}[{i}] ({clip(part.filename, 80)!r})" if part.filename else f"{field}[{i}]"
            images.append((name, await part.read()))
        raw_options = form.getlist(OPTIONS_FIELD)
        if len(raw_options) > 1 or (raw_options and not isinstance(raw_options[0], str)):
            raise RequestError(422, "invalid_options", f"'{OPTIONS_FIELD}' must be one text field holding JSON")
        options = _options_from_text(raw_options[0]) if raw_options else DEFAULT_REQUEST_OPTIONS
    return images, options


def _too_many(count: int, limit: int) -> RequestError:
    return RequestError(413, "too_many_images", f"{count} images in one request, over this service's limit of {limit}")


def _json_images(
    body: bytes, model: type[ReadJSON] | type[BatchReadJSON], limit: int
) -> tuple[list[tuple[str, bytes]], ReadRequestOptions]:
    check_json_shape(body)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "bad_json", f"the body is not valid JSON ({clip(str(exc), 200)})") from None
    except RecursionError:  # a backstop: check_json_shape refuses deep nesting first
        raise RequestError(413, "json_too_complex", "the body's JSON nests too deep") from None
    if isinstance(data, dict) and isinstance(data.get(IMAGES_FIELD), list) and len(data[IMAGES_FIELD]) > limit:
        raise _too_many(len(data[IMAGES_FIELD]), limit)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "missing" and len(e["loc"]) == 1 for e in errors):
            code = "missing_field"
        elif all(e["loc"][:1] == (OPTIONS_FIELD,) for e in errors):
            code = "invalid_options"
        else:
            code = "invalid_request"
        raise RequestError(422, code, _validation_message(exc)) from None
    if isinstance(parsed, ReadJSON):
        return [(IMAGE_FIELD, _base64_image(parsed.image, IMAGE_FIELD))], parsed.options
    return [
        (f"{IMAGES_FIELD}[{i}]", _base64_image(text, f"{IMAGES_FIELD}[{i}]")) for i, text in enumerate(parsed.images)
    ], parsed.options


async def _parse_json(
    request: Request, model: type[ReadJSON] | type[BatchReadJSON], limit: int
) -> tuple[list[tuple[str, bytes]], ReadRequestOptions]:
    body = await request.body()
    if len(body) <= _INLINE_JSON_BYTES:
        return _json_images(body, model, limit)
    # Parsing and base64-decoding megabytes takes milliseconds: not on the event loop.
    return await run_in_threadpool(_json_images, body, model, limit)


async def _parse(request: Request, batch: bool, limit: int) -> tuple[list[tuple[str, bytes]], ReadRequestOptions]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _parse_multipart(request, IMAGES_FIELD if batch else IMAGE_FIELD, limit if batch else 1)
    if media == "application/json" or media.endswith("+json"):
        return await _parse_json(request, BatchReadJSON if batch else ReadJSON, limit)
    field = f"'{IMAGES_FIELD}' file fields" if batch else f"a file field '{IMAGE_FIELD}'"
    raise RequestError(
        415,
        "unsupported_media_type",
        f"send multipart/form-data with {field}, or application/json with base64 images; "
        f"got {media or 'no Content-Type'}",
    )


# --- answers -------------------------------------------------------------------------------------


def _image_json(image: np.ndarray, result: ReadResult) -> dict[str, Any]:
    mode = "regions" if result.mode == "roi" else result.mode  # the request's word for the reader's 'roi'
    return {
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "mode": mode,
        "lines": [x.to_dict() for x in result],
    }


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 3)


# --- the app -------------------------------------------------------------------------------------


def _static_page() -> str:
    return (resources.files("edgeocr.serve") / "static" / "index.html").read_text(encoding="utf-8")


def _openapi_bodies(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Document both request encodings of the read endpoints (the handlers parse bodies themselves)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        ref = "#/components/schemas/{model}"
        for model in (ReadJSON, BatchReadJSON):
            model_schema = model.model_json_schema(ref_template=ref)
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        options_doc = {
            "type": "string",
            "description": "JSON of ReadRequestOptions (formats, regions, detector, min_confidence).",
        }
        for path, field, many, json_model in (
            ("/v1/read", IMAGE_FIELD, False, ReadJSON),
            ("/v1/read/batch", IMAGES_FIELD, True, BatchReadJSON),
        ):
            binary = {"type": "string", "format": "binary"}
            multipart = {
                "type": "object",
                "required": [field],
                "properties": {
                    field: {"type": "array", "items": binary} if many else binary,
                    OPTIONS_FIELD: options_doc,
                },
            }
            schema["paths"][path]["post"]["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": multipart},
                    "application/json": {"schema": {"$ref": ref.format(model=json_model.__name__)}},
                },
            }
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(settings: ServeSettings | None = None, *, detector: LineDetector | None = None) -> FastAPI:
    """The service for ``settings``; the readers (model, detector) are built here, once.

    ``detector``: a ready :class:`~edgeocr.runtime.reader.LineDetector` to use instead of the one
    ``settings.detector`` names (for a detector of your own).
    """
    settings = settings or ServeSettings()
    pool = ReaderPool(settings, detector=detector)
    metrics = ServiceMetrics()
    executor = ThreadPoolExecutor(max_workers=settings.max_concurrent_inferences, thread_name_prefix="edgeocr-read")
    page = _static_page()
    started = time.monotonic()
    sidecar = pool.recognizer.sidecar

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="edgeocr",
        version=__version__,
        lifespan=lifespan,
        description="Read printed industrial codes (lots, dates, serials, containers) in images.",
    )
    app.state.settings, app.state.pool, app.state.metrics = settings, pool, metrics
    _install_error_handlers(app)
    bodies = ByteBudget(settings.body_budget, metrics)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        budget=bodies,
        wait_s=min(settings.body_timeout_s, settings.request_timeout_s),
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, so it counts 413s too
    app.openapi = _openapi_bodies(app)  # type: ignore[method-assign]

    async def in_pool(work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    def decode(data: bytes, name: str) -> np.ndarray:
        try:
            return decode_image(data, name, max_pixels=settings.max_pixels)
        except ImageError as exc:
            raise RequestError(400, "bad_image", str(exc)) from None

    def run_reads(plan: ReadPlan, payloads: list[tuple[str, bytes]], submitted: float, stop: threading.Event):
        began = time.perf_counter()
        try:
            # The budget before the work: every header read, each image and all of them checked, nothing decoded.
            check_uploads(payloads, settings.max_pixels, settings.request_pixel_budget)
            images = []
            for name, data in payloads:
                if stop.is_set():
                    raise ReadCancelled("the read was cancelled")
                images.append(decode(data, name))
            decoded = time.perf_counter()
            results = pool.read(plan, images, should_stop=stop.is_set)
        except ReadCancelled:
            metrics.cancelled.inc()
            raise
        except RequestError:
            raise
        except FormatError as exc:  # e.g. formats whose automaton grows too large while reading
            raise RequestError(422, "invalid_options", str(exc)) from None
        except ImageError as exc:  # an image the reader refuses; other errors are the service's (500)
            raise RequestError(400, "bad_image", str(exc)) from None
        done = time.perf_counter()
        return (
            images,
            results,
            {"queue": _ms(began - submitted), "decode": _ms(decoded - began), "read": _ms(done - decoded)},
        )

    async def handle(request: Request, batch: bool, start: float) -> dict[str, Any]:
        body_limit = min(settings.body_timeout_s, settings.request_timeout_s)
        try:
            payloads, options = await asyncio.wait_for(_parse(request, batch, settings.batch_max_images), body_limit)
        except asyncio.TimeoutError:
            raise RequestError(
                408, "body_timeout", f"the request body did not arrive within this service's limit of {body_limit:g} s"
            ) from None
        plan = pool.plan(options)
        submitted = time.perf_counter()
        stop = threading.Event()
        try:
            images, results, timing = await asyncio.wait_for(
                in_pool(lambda: run_reads(plan, payloads, submitted, stop)),
                max(0.0, start + settings.request_timeout_s - submitted),
            )
        except asyncio.TimeoutError:
            stop.set()  # queued work was dropped with the wait; running work stops at its next image or line
            raise RequestError(
                504,
                "timeout",
                f"not answered within this service's limit of "
                f"{settings.request_timeout_s:g} s (the read was cancelled); try again later or send smaller images",
            ) from None
        metrics.images.inc(len(images))
        metrics.lines.inc(sum(len(lines) for lines in results))
        timing["total"] = _ms(time.perf_counter() - start)
        answer = {"model": settings.model, "mode": plan.mode}
        if batch:
            return {**answer, "results": [_image_json(i, r) for i, r in zip(images, results)], "timing_ms": timing}
        return {**answer, **_image_json(images[0], results[0]), "timing_ms": timing}

    async def answer(request: Request, batch: bool) -> JSONResponse:
        start = time.perf_counter()
        try:
            body = await handle(request, batch, start)
        except (RequestError, StarletteHTTPException):
            raise
        except Exception as exc:  # a fault of the service: log it, answer 500, keep serving
            logger.error("read request failed", exc_info=exc)
            raise RequestError(
                500, "internal_error", f"the service failed on this request ({type(exc).__name__}: {exc})"
            ) from None
        return JSONResponse(body)

    @app.post(
        "/v1/read", response_model=ReadResponse, responses=ERROR_RESPONSES, summary="Read the text lines of one image"
    )
    async def read(request: Request) -> JSONResponse:
        """Multipart field `image` (a file) or JSON `{"image": "<base64>"}`, with optional `options`."""
        return await answer(request, batch=False)

    @app.post(
        "/v1/read/batch",
        response_model=BatchReadResponse,
        responses=ERROR_RESPONSES,
        summary="Read the text lines of several images",
    )
    async def read_batch(request: Request) -> JSONResponse:
        """Multipart fields `images` (files) or JSON `{"images": ["<base64>", ...]}`, with optional `options`.
        All lines of all images are recognised in shared batches."""
        return await answer(request, batch=True)

    @app.get("/health", summary="Liveness, model and limits")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "model": settings.model,
            "model_sha256": sidecar.onnx_sha256,
            "model_arch": sidecar.config.arch,
            "mode": settings.mode,
            # the name it was built from ('default' when none was named), or the class of one passed in
            "detector": (settings.detector_spec if detector is None else type(detector).__name__)
            if pool.detector
            else None,
            "formats": list(settings.formats),
            "uptime_s": round(time.monotonic() - started, 3),
            "limits": {
                "max_body_bytes": settings.max_body_bytes,
                "max_bodies_bytes": settings.body_budget,
                "max_pixels": settings.max_pixels,
                "max_request_pixels": settings.request_pixel_budget,
                "batch_max_images": settings.batch_max_images,
                "request_timeout_s": settings.request_timeout_s,
                "body_timeout_s": settings.body_timeout_s,
                "header_timeout_s": settings.header_timeout_s,
                "max_header_bytes": settings.max_header_bytes,
                "max_connections": settings.max_connections,
                "max_concurrent_inferences": settings.max_concurrent_inferences,
            },
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: the settings come as JSON in ``EDGEOCR_SERVE_SETTINGS``."""
    raw = os.environ.get(SETTINGS_ENV)
    return create_app(ServeSettings.model_validate_json(raw) if raw else ServeSettings())
