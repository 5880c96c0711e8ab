"""What the ship scripts share: the edgeocr command of this environment and their common options."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def edgeocr(*args: str) -> None:
    """Run this environment's ``edgeocr`` command; a failure stops the script."""
    subprocess.run([str(Path(sys.executable).parent / "edgeocr"), *args], check=True)


def bind_copied_sidecar(model: Path) -> None:
    """The sidecar copied beside ``model`` from a run: one of format 1 (a run older than bound settings,
    no ``settings_sha256``) is bound to the model; a bound one must still match (an edited one stops here)."""
    import json

    from edgeocr.core.rebind import rebind_model
    from edgeocr.core.sidecar import SETTINGS_FIELD, sidecar_path

    if SETTINGS_FIELD not in json.loads(sidecar_path(model).read_text(encoding="utf-8")):
        rebind_model(model)
    from edgeocr.core.detector_config import load_detector_sidecar
    from edgeocr.core.sidecar import load_sidecar

    sidecar = json.loads(sidecar_path(model).read_text(encoding="utf-8"))
    (load_detector_sidecar if sidecar.get("format") == "edgeocr-detector" else load_sidecar)(sidecar_path(model))


def ship_parser(doc: str) -> argparse.ArgumentParser:
    """--run, --name, --realdev and --threads, with the script's first docstring line as description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="training run directory (holds model.onnx)")
    parser.add_argument("--name", default="default")
    parser.add_argument("--realdev", type=Path, default=ROOT.parent / "shared" / "realdev")
    parser.add_argument("--threads", type=int, default=2)
    return parser
