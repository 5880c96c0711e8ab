"""The JSON sidecar written next to every exported ``.onnx`` recogniser.

``model.onnx`` travels with ``model.json``: the full :class:`RecognizerConfig` (charset, input
geometry, width policy, normalisation, decoder), the edgeocr version that exported it and the
SHA-256 of the ``.onnx`` bytes. The runtime refuses a model whose sidecar is missing, malformed
or does not match the ``.onnx`` it sits next to.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeocr.core.charset import Charset
from edgeocr.core.errors import ModelError, read_text_or_raise
from edgeocr.core.recognizer_config import RecognizerConfig

SIDECAR_FORMAT = "edgeocr-recognizer"
SIDECAR_FORMAT_VERSION = 1


class OptimizationNote(BaseModel):
    """How ``edgeocr optimize`` derived a model from another one (absent for a trained model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="The model it was derived from, as given to edgeocr optimize.")
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the source model's bytes.")
    steps: tuple[str, ...] = Field(description="The optimisation steps in the order applied, e.g. ('int8',).")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Settings of each step (quantisation format, excluded nodes, engine, ...)."
    )


class DerivedFrom(BaseModel):
    """Third-party pretrained weights a model was derived from, and what redistributing it requires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Pretrained source name in edgeocr.models.pretrained, e.g. 'ppocrv6'.")
    title: str = Field(description="What the source weights are.")
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the source file imported.")
    licence: str = Field(description="Licence of the source weights (SPDX); the derived model carries it.")
    attribution: str = Field(description="Copyright and attribution that must travel with the model.")
    notice: str = Field(description="Package file with the licence text and the modification notice.")


class ModelSidecar(BaseModel):
    """Metadata of one exported recogniser, validated on load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["edgeocr-recognizer"] = Field(
        default=SIDECAR_FORMAT, description="Marks the file as an edgeocr recogniser sidecar."
    )
    format_version: Literal[1] = Field(default=SIDECAR_FORMAT_VERSION, description="Version of this sidecar layout.")
    edgeocr_version: str = Field(description="edgeocr version that exported the model.")
    onnx_file: str = Field(description="File name of the ONNX model this sidecar describes.")
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the ONNX file's bytes.")
    opset: int = Field(ge=7, description="ONNX opset the model was exported with.")
    input_name: str = Field(description="Name of the ONNX input: float32 [N, 1, H, W], N and W dynamic.")
    output_name: str = Field(description="Name of the ONNX output: float32 [N, T, C] with T = W / frame_stride.")
    output_kind: Literal["probs", "logits"] = Field(
        description="'probs' when the model ends in a softmax (no softmax needed at runtime)."
    )
    charset_fingerprint: str = Field(description="Charset fingerprint, checked against config.charset.")
    config: RecognizerConfig = Field(description="The recogniser configuration the model was trained with.")
    optimization: OptimizationNote | None = Field(
        default=None, description="How edgeocr optimize made this model from another; None for a trained model."
    )
    derived_from: DerivedFrom | None = Field(
        default=None, description="Third-party pretrained weights the model was fine-tuned from; None: our own."
    )

    @model_validator(mode="after")
    def _fingerprint_matches_charset(self) -> ModelSidecar:
        expected = Charset(self.config.charset).fingerprint
        if self.charset_fingerprint != expected:
            raise ValueError(
                f"charset_fingerprint {self.charset_fingerprint!r} does not match config.charset ({expected!r})"
            )
        return self

    def to_json(self) -> str:
        """Pretty JSON text, stable key order."""
        # exclude_none: a trained model's sidecar stays as it was before the optimisation note existed.
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n"


def sidecar_path(model_path: Path | str) -> Path:
    """The sidecar of ``model.onnx`` is ``model.json`` beside it."""
    return Path(model_path).with_suffix(".json")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_sidecar(path: Path | str) -> ModelSidecar:
    """Read and validate a sidecar; every failure is a :class:`ModelError` naming the file."""
    path = Path(path)
    text = read_text_or_raise(
        path, ModelError, f"model sidecar {path} is missing; re-export the model to create it", "model sidecar"
    )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"model sidecar {path} is not valid JSON: {exc}") from exc
    try:
        return ModelSidecar.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ModelError(f"model sidecar {path} is malformed: {problems}") from exc
