"""Find a recogniser by name (shipped with the package) or by path. Nothing is ever downloaded."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgeocr.core.errors import ModelError

SHIPPED_MODELS_PACKAGE = "edgeocr.assets"


def shipped_models() -> dict[str, Path]:
    """Models inside the installed package: ``assets/models/NAME.onnx`` with its sidecar."""
    try:
        folder = Path(str(resources.files(SHIPPED_MODELS_PACKAGE) / "models"))
    except ModuleNotFoundError:
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.onnx"))} if folder.is_dir() else {}


def resolve_model(name_or_path: str | Path) -> Path:
    """A path to an ``.onnx`` file, or the name of a shipped model ('default')."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".onnx" or candidate.exists():
        if not candidate.is_file():
            raise ModelError(f"model file {candidate} does not exist")
        return candidate
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none yet"
    raise ModelError(f"no model named {name_or_path!r}: shipped models are {names}; or pass the path of an .onnx file")
