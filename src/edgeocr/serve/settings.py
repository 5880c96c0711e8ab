"""What an ``edgeocr serve`` process is built from: one frozen :class:`ServeSettings`.

The settings travel to uvicorn worker processes as JSON in the ``EDGEOCR_SERVE_SETTINGS``
environment variable (see :func:`edgeocr.serve.app.create_app_from_env`), so every worker builds
the same app.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeocr.core.images import DEFAULT_MAX_PIXELS
from edgeocr.runtime.engines import engine_config
from edgeocr.runtime.reader import DEFAULT_DETECTOR, DEFAULT_FALLBACK_BELOW

SETTINGS_ENV = "EDGEOCR_SERVE_SETTINGS"


class ServeSettings(BaseModel):
    """The model, reading mode and limits of one HTTP service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="default",
        min_length=1,
        description="Recogniser: the name of a shipped model or the path of an exported .onnx file.",
    )
    mode: Literal["auto", "whole", "detector"] = Field(
        default="auto",
        description=(
            "How lines are found when a request does not say: 'auto' (per image: one shaped like a line crop, "
            "edgeocr.core.layout.looks_like_line_crop, is read whole, any other goes through the detector), "
            "'whole' (each image is one line crop) or 'detector' (find the lines with the detector)."
        ),
    )
    detector: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Line detector: a detector shipped in the package ('default', 'fast'), the path of an exported "
            "detector .onnx, or 'rapidocr' (PP-OCRv4's, from rapidocr-onnxruntime). Used by modes 'auto' and "
            "'detector' (None there means 'default'); with mode 'whole' it lets requests turn the detector on."
        ),
    )
    formats: tuple[str, ...] = Field(
        default=(),
        description="Formats the lines may take (edgeocr.core.formats specs); empty: free text.",
    )
    min_confidence: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Lines whose weakest character is below this are not valid."
    )
    engine_threads: int = Field(
        default=1,
        ge=0,
        description="ONNX Runtime threads per inference (recogniser and detector); 0: all cores.",
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="Where the recogniser runs; 'cuda' is refused at start where CUDA is missing (never the CPU).",
    )
    engine: Literal["onnxruntime", "openvino", "tensorrt"] = Field(
        default="onnxruntime",
        description=(
            "What runs the recogniser: ONNX Runtime, OpenVINO (CPU; also the .xml that edgeocr optimize writes) "
            "or TensorRT (with device 'cuda'); see edgeocr.runtime.engines."
        ),
    )
    fallback: str | None = Field(
        default=None,
        min_length=1,
        description="A second recogniser that re-reads the lines the first is unsure of (a cascade); None: none.",
    )
    fallback_below: float = Field(
        default=DEFAULT_FALLBACK_BELOW,
        gt=0.0,
        le=1.0,
        description="Confidence under which the fallback re-reads a line.",
    )
    max_concurrent_inferences: int = Field(
        default=2,
        ge=1,
        le=256,
        description=(
            "Inferences running at once (threads of the inference pool); further requests wait their turn "
            "within their time limit."
        ),
    )
    max_body_bytes: int = Field(
        default=20 * 2**20,
        ge=1024,
        description="Request bodies larger than this are refused with 413, before they are read in full.",
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description="Images with more pixels are refused with 413, from their header, before decoding (bomb guard).",
    )
    max_request_pixels: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Pixels one request may hold decoded, all its images together (a batch of 16 images of 49 MP "
            "would be 2.3 GB as BGR): over it, 413 from the headers, before anything is decoded. None: twice "
            "max_pixels."
        ),
    )
    max_bodies_bytes: int | None = Field(
        default=None,
        ge=1024,
        description=(
            "Request body bytes held at once by all requests together (each request reserves its "
            "Content-Length, or max_body_bytes when it has none, before its body is read); a request that "
            "does not fit waits for room within body_timeout_s, then gets 503. None: 4 x max_body_bytes."
        ),
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        description=(
            "Time a request may take in all (body, waiting and inference); past it the answer is 504 and "
            "its inference is cancelled (it stops at the next image or line)."
        ),
    )
    body_timeout_s: float = Field(
        default=15.0,
        gt=0.0,
        description="Time a request's body may take to arrive (slow clients); past it the answer is 408.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description=(
            "Time a connection may take to send a request's headers (from connecting, or from the end of its "
            "previous answer); past it the connection is closed (slow-header clients)."
        ),
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Request line and headers larger than this are refused with 400 (uvicorn's h11 limit).",
    )
    max_connections: int = Field(
        default=64,
        ge=1,
        description=(
            "Open connections and requests in progress per process (uvicorn's limit_concurrency); beyond it "
            "requests get 503 at once."
        ),
    )
    keep_alive_s: int = Field(
        default=5, ge=1, description="An idle keep-alive connection is closed after this many seconds."
    )
    batch_max_images: int = Field(
        default=16, ge=1, le=1024, description="Most images one POST /v1/read/batch may carry."
    )
    reader_cache_size: int = Field(
        default=4,
        ge=0,
        le=64,
        description=(
            "Readers kept for requests whose formats are not among the configured ones (least recently "
            "used dropped first); 0: build one for every such request."
        ),
    )

    @field_validator("model", "detector", "fallback", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _check_formats(self) -> ServeSettings:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats are listed more than once: {list(self.formats)}")
        if self.request_pixel_budget < self.max_pixels:
            raise ValueError("max_request_pixels must be at least max_pixels (one image of the largest size)")
        if self.body_budget < self.max_body_bytes:
            raise ValueError("max_bodies_bytes must be at least max_body_bytes (one body of the largest size)")
        engine_config(self.device, self.engine)  # ValueError for a pair that cannot run (tensorrt on the cpu)
        return self

    @property
    def request_pixel_budget(self) -> int:
        """Pixels one request may hold decoded (``max_request_pixels``, default twice ``max_pixels``)."""
        return self.max_request_pixels if self.max_request_pixels is not None else 2 * self.max_pixels

    @property
    def body_budget(self) -> int:
        """Request body bytes held at once (``max_bodies_bytes``, default 4 x ``max_body_bytes``)."""
        return self.max_bodies_bytes if self.max_bodies_bytes is not None else 4 * self.max_body_bytes

    @property
    def has_detector(self) -> bool:
        """Whether the service builds a detector (modes 'auto' and 'detector', or one named for requests to use)."""
        return self.mode in ("auto", "detector") or self.detector is not None

    @property
    def detector_spec(self) -> str | None:
        """The detector the service builds: ``detector``, else the shipped 'default'."""
        if self.detector is None and self.mode in ("auto", "detector"):
            return DEFAULT_DETECTOR
        return self.detector
