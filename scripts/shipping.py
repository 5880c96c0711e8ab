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


def ship_parser(doc: str) -> argparse.ArgumentParser:
    """--run, --name, --realdev and --threads, with the script's first docstring line as description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="training run directory (holds model.onnx)")
    parser.add_argument("--name", default="default")
    parser.add_argument("--realdev", type=Path, default=ROOT.parent / "shared" / "realdev")
    parser.add_argument("--threads", type=int, default=2)
    return parser
