"""Find a recogniser or a line detector by name (shipped with the package) or by path.

Recognisers ship as ``assets/models/NAME.onnx``, detectors as ``assets/detectors/NAME.onnx``, each
beside its JSON sidecar. Nothing is ever downloaded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgeocr.core.errors import ModelError

SHIPPED_MODELS_PACKAGE = "edgeocr.assets"


def _shipped(folder_name: str) -> dict[str, Path]:
    try:
        folder = Path(str(resources.files(SHIPPED_MODELS_PACKAGE) / folder_name))
    except ModuleNotFoundError:
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.onnx"))} if folder.is_dir() else {}


def shipped_models() -> dict[str, Path]:
    """Recognisers inside the installed package: ``assets/models/NAME.onnx`` with its sidecar."""
    return _shipped("models")


def shipped_detectors() -> dict[str, Path]:
    """Line detectors inside the installed package: ``assets/detectors/NAME.onnx`` with its sidecar."""
    return _shipped("detectors")


#: What a folder written by ``edgeocr train``/``finetune``/``optimize`` holds, in order of preference.
MODEL_FILES = ("model.onnx", "model.xml")


def _resolve(name_or_path: str | Path, shipped: dict[str, Path], what: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.is_dir():  # a run or optimize output folder
        found = [candidate / name for name in MODEL_FILES if (candidate / name).is_file()]
        if not found:
            raise ModelError(f"{candidate} holds no {' or '.join(MODEL_FILES)}; pass the model file itself")
        return found[0]
    if candidate.suffix in (".onnx", ".xml") or candidate.exists():
        if not candidate.is_file():
            raise ModelError(f"{what} file {candidate} does not exist")
        return candidate
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none yet"
    raise ModelError(
        f"no {what} named {name_or_path!r}: shipped {what}s are {names}; or pass the path of an .onnx file"
    )


def resolve_model(name_or_path: str | Path) -> Path:
    """A recogniser: a shipped one's name ('default'), an ``.onnx`` file, an OpenVINO ``.xml`` written by
    ``edgeocr optimize --engine openvino``, or the folder a run or ``edgeocr optimize`` wrote."""
    return _resolve(name_or_path, shipped_models(), "model")


def resolve_detector(name_or_path: str | Path) -> Path:
    """A path to a detector ``.onnx`` file, or the name of a shipped one ('default')."""
    return _resolve(name_or_path, shipped_detectors(), "detector")
