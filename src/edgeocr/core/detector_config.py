"""The configuration of a text-line detector and the JSON sidecar of an exported one.

A detector is a DB-style segmentation network (Differentiable Binarization, Liao et al. 2020):
it predicts, per pixel, the probability of lying in the *shrunk* core of a text line; the
runtime thresholds that map, fits a rotated rectangle to each blob and grows it back by the
same distance rule the training targets were shrunk by. :class:`DetectorConfig` holds
everything besides the weights that both sides must agree on: input size policy,
normalisation, the shrink ratio and the post-processing thresholds. It lives in ``core``
(pydantic only) because training writes it and the torch-free runtime reads it back from the
sidecar.

The recogniser's :class:`~edgeocr.core.sidecar.ModelSidecar` does not fit a detector (it
requires a charset and a recogniser configuration), so :class:`DetectorSidecar` is its sibling
with the same guarantees: the SHA-256 of the ``.onnx`` bytes, the input/output names and the
full configuration, validated on load, and ``settings_sha256`` binding the configuration to the
model (see :mod:`edgeocr.core.sidecar`): a sidecar edited after export is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeocr.core.errors import ModelError, read_text_or_raise
from edgeocr.core.sidecar import DerivedFrom, OptimizationNote, bound_json, check_settings, validation_problems

DETECTOR_SIDECAR_FORMAT = "edgeocr-detector"
#: 2: ``settings_sha256`` binds the configuration to the model; 1 (older) had no such field.
DETECTOR_SIDECAR_FORMAT_VERSION = 2
#: What the settings checksum covers, for messages.
DETECTOR_SETTINGS = (
    "the config block (input size and resize policy, normalisation, shrink ratio, thresholds, box limits), "
    "input and output names, and the ONNX checksum"
)

ResizePolicy = Literal["long_side", "shrink_only"]


class DetectorConfig(BaseModel):
    """Everything needed to feed a detector and turn its probability map into line polygons."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: str = Field(min_length=1, description="Architecture name known to edgeocr.models.detector, e.g. 'db_s'.")
    max_side: int = Field(
        default=640,
        ge=32,
        le=4096,
        description="Images are resized, keeping their aspect ratio, so that their long side is this many pixels "
        "(see resize); a multiple of size_multiple.",
    )
    size_multiple: int = Field(
        default=32,
        ge=1,
        description="Network input height and width are padded up to a multiple of this (the backbone's stride).",
    )
    resize: ResizePolicy = Field(
        default="long_side",
        description="'long_side': scale every image so its long side is max_side (small images are enlarged, "
        "which helps small print); 'shrink_only': only images larger than max_side are scaled down.",
    )
    mean: tuple[float, float, float] = Field(
        default=(0.5, 0.5, 0.5),
        description="Normalisation per channel (B, G, R): pixel values scaled to [0, 1] have this subtracted.",
    )
    std: tuple[float, float, float] = Field(
        default=(0.25, 0.25, 0.25), description="Normalisation per channel (B, G, R): then divided by this."
    )
    shrink_ratio: float = Field(
        default=0.4,
        gt=0.0,
        lt=1.0,
        description="Training targets shrink each line polygon inwards by D = A (1 - r^2) / L (A area, L perimeter, "
        "r this ratio); the network learns the shrunk cores.",
    )
    binary_threshold: float = Field(
        default=0.3, gt=0.0, lt=1.0, description="Pixels with probability above this form the text cores."
    )
    box_threshold: float = Field(
        default=0.6, gt=0.0, lt=1.0, description="A core whose mean probability is below this is dropped."
    )
    unclip_ratio: float | None = Field(
        default=None,
        gt=0.0,
        description="Each core's rotated rectangle is grown on every side by area * ratio / perimeter (DB's rule). "
        "None: the ratio that exactly undoes the training shrink for a rectangle of that size (a perfect core "
        "gives back the labelled box); a number: that fixed ratio (DB uses 1.5).",
    )
    min_box_side: float = Field(
        default=3.0,
        ge=0.0,
        description="Boxes whose short side (after growing, in network-input pixels) is below this are dropped.",
    )
    min_box_area: float = Field(
        default=24.0,
        ge=0.0,
        description="Boxes whose area (after growing, in network-input pixels) is below this are dropped.",
    )
    max_candidates: int = Field(
        default=1000, ge=1, description="At most this many cores per image are considered (largest first)."
    )

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"std values must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _sizes_are_consistent(self) -> DetectorConfig:
        if self.max_side % self.size_multiple:
            raise ValueError(f"max_side ({self.max_side}) must be a multiple of size_multiple ({self.size_multiple})")
        return self


class DetectorSidecar(BaseModel):
    """Metadata of one exported detector (``model.json`` beside ``model.onnx``), validated on load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["edgeocr-detector"] = Field(
        default=DETECTOR_SIDECAR_FORMAT, description="Marks the file as an edgeocr detector sidecar."
    )
    format_version: Literal[2] = Field(
        default=DETECTOR_SIDECAR_FORMAT_VERSION, description="Version of this sidecar layout."
    )
    edgeocr_version: str = Field(description="edgeocr version that exported the model.")
    onnx_file: str = Field(description="File name of the ONNX model this sidecar describes.")
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the ONNX file's bytes.")
    settings_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the canonical JSON of every other field (configuration and onnx_sha256): binds "
        "the configuration to the model. Written by to_json, checked by load_detector_sidecar.",
    )
    opset: int = Field(ge=7, description="ONNX opset the model was exported with.")
    input_name: str = Field(
        description="Name of the ONNX input: float32 [N, 3, H, W] (B, G, R normalised), H and W multiples of "
        "config.size_multiple, N, H and W dynamic."
    )
    output_name: str = Field(description="Name of the ONNX output: float32 [N, 1, H, W] text-core probabilities.")
    config: DetectorConfig = Field(description="The detector configuration the model was trained with.")
    derived_from: DerivedFrom | None = Field(
        default=None, description="Third-party pretrained weights the model was imported from; None: our own."
    )
    optimization: OptimizationNote | None = Field(
        default=None, description="How edgeocr optimize-detector made this model from another (int8); None: not."
    )

    def to_json(self) -> str:
        """Pretty JSON text, stable key order, with the ``settings_sha256`` of what it holds."""
        return bound_json(self.model_dump(mode="json"))


def load_detector_sidecar(path: Path | str) -> DetectorSidecar:
    """Read and validate a detector sidecar; every failure is a :class:`ModelError` naming the file."""
    path = Path(path)
    text = read_text_or_raise(
        path, ModelError, f"detector sidecar {path} is missing; re-export the model to create it", "detector sidecar"
    )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"detector sidecar {path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("format") not in (None, DETECTOR_SIDECAR_FORMAT):
        raise ModelError(f"{path} describes a {data.get('format')!r} model, not a detector")
    if isinstance(data, dict):
        check_settings(path, data, "detector sidecar", DETECTOR_SETTINGS, DETECTOR_SIDECAR_FORMAT_VERSION)
    return parse_detector_sidecar(path, data)


def parse_detector_sidecar(path: Path, data: Any) -> DetectorSidecar:
    """Validate a detector sidecar's JSON object (its settings checksum is not checked here)."""
    try:
        return DetectorSidecar.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"detector sidecar {path} is malformed: {validation_problems(exc)}") from exc
