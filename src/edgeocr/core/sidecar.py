"""The JSON sidecar written next to every exported ``.onnx`` recogniser.

``model.onnx`` travels with ``model.json``: the full :class:`RecognizerConfig` (charset, input
geometry, width policy, normalisation, decoder), the edgeocr version that exported it and the
SHA-256 of the ``.onnx`` bytes. The runtime refuses a model whose sidecar is missing, malformed
or does not match the ``.onnx`` it sits next to.

**A model is its files.** ``onnx_sha256`` binds the sidecar to the ONNX bytes, and
``settings_sha256`` binds the settings to both: it is the SHA-256 of the canonical JSON (keys
sorted, no spaces, UTF-8) of every field of the sidecar as written, except ``settings_sha256``
itself: the whole ``config`` block (charset, input height, frame stride, width policy,
normalisation, decoder, vertical settings), the output kind and names, the optimisation note,
and ``onnx_sha256``. A sidecar edited after export (a changed ``frame_stride``, a reordered
charset, another normalisation) therefore no longer matches and is refused on load, instead of
giving wrong reads marked valid. :meth:`ModelSidecar.to_json` computes it, so every sidecar
the code writes is bound; a deliberate edit is bound again with ``edgeocr export --rebind
MODEL`` (:func:`edgeocr.core.rebind.rebind_model`), which also upgrades a sidecar of format 1
(written before settings were bound; refused on load with that advice). The detector's sidecar
(:mod:`edgeocr.core.detector_config`) is bound the same way.
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
#: 2: ``settings_sha256`` binds the settings to the model; 1 (older) had no such field.
SIDECAR_FORMAT_VERSION = 2
SETTINGS_FIELD = "settings_sha256"
#: What the settings checksum covers, for messages.
RECOGNIZER_SETTINGS = (
    "the config block (charset, input height, frame stride, width policy, normalisation, decoder, vertical "
    "settings), output kind and names, and the ONNX checksum"
)
REBIND_HINT = (
    "if the edit is deliberate and checked, bind the settings again with `edgeocr export --rebind {model}`; "
    "otherwise re-export the model"
)


def settings_sha256(data: dict[str, Any]) -> str:
    """The settings checksum of a sidecar's JSON object: SHA-256 of the canonical JSON (sorted keys, no
    spaces, UTF-8) of every field but ``settings_sha256`` itself (``onnx_sha256`` included)."""
    payload = {key: value for key, value in data.items() if key != SETTINGS_FIELD}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bound_json(data: dict[str, Any]) -> str:
    """Pretty JSON text of a sidecar's fields with a fresh ``settings_sha256`` (right after ``onnx_sha256``)."""
    digest = settings_sha256(data)
    ordered: dict[str, Any] = {}
    for key, value in data.items():
        if key == SETTINGS_FIELD:
            continue
        ordered[key] = value
        if key == "onnx_sha256":
            ordered[SETTINGS_FIELD] = digest
    ordered.setdefault(SETTINGS_FIELD, digest)
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


def check_settings(
    path: Path, data: dict[str, Any], what: str, covers: str, current_version: int = SIDECAR_FORMAT_VERSION
) -> None:
    """Refuse, with a :class:`ModelError` naming the sidecar ``path``, a sidecar ``data`` (its JSON object
    as read) whose settings are not bound to its model: edited after export, or of format 1 (no
    ``settings_sha256``); and one of a format newer than ``current_version``."""
    model = model_path_of(path)
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > current_version:
        raise ModelError(
            f"{what} {path} has format {version}, written by a newer edgeocr than this one (which reads format "
            f"{current_version}): upgrade edgeocr"
        )
    if SETTINGS_FIELD not in data:
        raise ModelError(
            f"{what} {path} does not bind its settings to the model (no {SETTINGS_FIELD}: sidecar format 1, "
            f"written by an older edgeocr): check its settings, then bind them with `edgeocr export --rebind "
            f"{model}`, or re-export the model"
        )
    if data[SETTINGS_FIELD] != settings_sha256(data):
        raise ModelError(
            f"{what} {path}: the sidecar's settings were edited after export ({covers} no longer match its "
            f"{SETTINGS_FIELD}); {REBIND_HINT.format(model=model)}"
        )


def model_path_of(sidecar: Path) -> Path:
    """The model a sidecar describes, for messages: ``model.onnx`` (or the ``model.xml`` beside it)."""
    sidecar = Path(sidecar)
    xml = sidecar.with_suffix(".xml")
    return xml if xml.is_file() and not sidecar.with_suffix(".onnx").is_file() else sidecar.with_suffix(".onnx")


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
    format_version: Literal[2] = Field(default=SIDECAR_FORMAT_VERSION, description="Version of this sidecar layout.")
    edgeocr_version: str = Field(description="edgeocr version that exported the model.")
    onnx_file: str = Field(description="File name of the ONNX model this sidecar describes.")
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the ONNX file's bytes.")
    settings_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the canonical JSON of every other field (settings and onnx_sha256): binds the "
        "settings to the model. Written by to_json, checked by load_sidecar; None until written.",
    )
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
        """Pretty JSON text, stable key order, with the ``settings_sha256`` of what it holds."""
        # exclude_none: a trained model's sidecar stays as it was before the optimisation note existed.
        return bound_json(self.model_dump(mode="json", exclude_none=True))


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
    if isinstance(data, dict):
        check_settings(path, data, "model sidecar", RECOGNIZER_SETTINGS)
    return parse_sidecar(path, data)


def parse_sidecar(path: Path, data: Any) -> ModelSidecar:
    """Validate a sidecar's JSON object (its settings checksum is not checked here: see load_sidecar)."""
    try:
        return ModelSidecar.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"model sidecar {path} is malformed: {validation_problems(exc)}") from exc


def validation_problems(exc: ValidationError) -> str:
    """One line: ``field.path: message`` per problem."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors())
