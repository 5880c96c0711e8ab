"""Bind a sidecar's settings to its model again: ``edgeocr export --rebind MODEL``.

The runtime refuses a sidecar whose ``settings_sha256`` does not match its settings (an edit after
export) or that has none (format 1, written before settings were bound; see
:mod:`edgeocr.core.sidecar`). When the edit is deliberate and checked (a detector's ``max_side``
or thresholds tuned on validation images, an old model whose settings are known to be right),
:func:`rebind_model` writes the sidecar again, bound: it validates the settings, checks the model
bytes against the sidecar's ``onnx_sha256`` (the model file itself is never rewritten) and
records a fresh ``settings_sha256``. It works for recognisers (``.onnx``, or an OpenVINO ``.xml``
whose checksum covers the ``.xml`` then the ``.bin`` bytes) and for detectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.detector_config import (
    DETECTOR_SIDECAR_FORMAT,
    DETECTOR_SIDECAR_FORMAT_VERSION,
    parse_detector_sidecar,
)
from edgeocr.core.errors import ModelError, read_text_or_raise
from edgeocr.core.sidecar import (
    SETTINGS_FIELD,
    SIDECAR_FORMAT,
    SIDECAR_FORMAT_VERSION,
    parse_sidecar,
    sha256_hex,
    sidecar_path,
)


def model_bytes_sha256(model: Path) -> str:
    """SHA-256 of what a sidecar's ``onnx_sha256`` covers: the ``.onnx`` bytes, or an OpenVINO IR's ``.xml``
    bytes followed by its ``.bin`` bytes."""
    try:
        data = model.read_bytes()
        if model.suffix == ".xml":
            data += model.with_suffix(".bin").read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model {model}: {exc.strerror or exc}") from exc
    return sha256_hex(data)


def rebind_model(model: Path | str) -> tuple[Path, bool]:
    """Write ``model``'s sidecar again with its settings bound to it; return (the sidecar, whether it changed).

    Raises :class:`ModelError` when the sidecar is missing or malformed, or when the model bytes do
    not match its ``onnx_sha256`` (the model was modified or replaced: re-export it instead).
    """
    model = Path(model)
    if model.suffix not in (".onnx", ".xml"):
        raise ModelError(f"{model}: give the model file (.onnx, or the .xml of an OpenVINO model) to rebind")
    if not model.is_file():
        raise ModelError(f"model file {model} does not exist")
    path = sidecar_path(model)
    text = read_text_or_raise(path, ModelError, f"model sidecar {path} is missing; re-export the model", "sidecar")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"sidecar {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"sidecar {path} is malformed: not a JSON object")
    kind = data.get("format")
    fields = {key: value for key, value in data.items() if key != SETTINGS_FIELD}
    if kind == DETECTOR_SIDECAR_FORMAT:
        sidecar: Any = parse_detector_sidecar(path, {**fields, "format_version": DETECTOR_SIDECAR_FORMAT_VERSION})
    elif kind == SIDECAR_FORMAT:
        sidecar = parse_sidecar(path, {**fields, "format_version": SIDECAR_FORMAT_VERSION})
    else:
        raise ModelError(f"sidecar {path} describes a {kind!r} model, neither a recogniser nor a detector")
    if model_bytes_sha256(model) != sidecar.onnx_sha256:
        raise ModelError(
            f"{model} does not match the checksum in {path}: the model was modified or replaced after export; "
            "re-export it (rebinding binds settings to the model bytes the sidecar names, never to other bytes)"
        )
    bound = sidecar.to_json()
    changed = bound != text
    if changed:
        atomic_write_bytes(path, bound.encode("utf-8"))
    return path, changed
