"""The wheel as a user gets it: built from this tree, installed with its runtime dependencies only into a fresh
virtual environment (no torch), then reading a bundled sample with the command line and with the Python API.

Needs the package index pip is configured with (PyPI or a mirror) for the build backend and the runtime
dependencies; without one these tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "edgeocr" / "assets"
SAMPLES = REPO / "samples" / "lines"
SAMPLE = "date/00000004.png"  # letters, digits and spaces; the default model reads it exactly

# Building, a fresh venv and its installs take tens of seconds to a few minutes (index speed).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    # Nothing of this test run's interpreter or source tree may leak into the fresh environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(out: subprocess.CompletedProcess, what: str) -> str:
    assert out.returncode == 0, (
        f"{what} failed (exit {out.returncode})\n--- stdout ---\n{out.stdout[-4000:]}\n"
        f"--- stderr ---\n{out.stderr[-4000:]}"
    )
    return out.stdout


def _label(sample: str) -> str:
    labels = dict(line.split("\t", 1) for line in (SAMPLES / "labels.tsv").read_text("utf-8").splitlines() if line)
    return labels[sample]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built as `pip wheel .` builds it (isolated, with the backend pyproject.toml asks for).

    Built from a copy of the working tree: setuptools builds inside the project (build/lib), where files left
    by an earlier build would slip into the wheel, and where two runs at once would collide."""
    tree = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tree / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, tree], tree, 300), "pip wheel")
    wheels = sorted(dist.glob("edgeocr-*.whl"))
    assert len(wheels) == 1, f"expected one edgeocr wheel in {dist}, found {[w.name for w in wheels]}"
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel and its runtime dependencies (no extras) installed."""
    root = tmp_path_factory.mktemp("wheel-venv")
    venv = root / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv], root, 120), "python -m venv")
    _ok(_run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], root, 480), "pip install <wheel>")
    return venv


def test_wheel_ships_models_licences_and_types_but_no_training_weights(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = sorted(n for n in names if n.endswith((".pt", ".ckpt")))
    assert not weights, f"training weights in the wheel (reading never uses them): {weights}"
    assert "edgeocr/py.typed" in names

    # Every model in the source tree (recognisers and detectors) ships, each with its sidecar.
    shipped = {p.relative_to(REPO / "src").as_posix() for p in ASSETS.glob("*/*.onnx")}
    assert "edgeocr/assets/models/default.onnx" in shipped
    assert {n for n in names if n.startswith("edgeocr/assets/") and n.endswith(".onnx")} == shipped
    missing = sorted(n for n in shipped if n.removesuffix(".onnx") + ".json" not in names)
    assert not missing, f"models without their .json sidecar in the wheel: {missing}"

    licences = {p.relative_to(REPO / "src").as_posix() for p in (ASSETS / "licenses").iterdir() if p.is_file()}
    assert "edgeocr/assets/licenses/Apache-2.0.txt" in licences
    assert licences <= names, f"licence files missing from the wheel: {sorted(licences - names)}"


def test_the_installed_wheel_runs_without_torch(venv: Path, tmp_path: Path) -> None:
    python = venv / "bin" / "python"
    out = _run([python, "-c", "import torch"], tmp_path, 60)
    assert out.returncode != 0 and "No module named 'torch'" in out.stderr, (
        f"torch is importable in the fresh venv: the wheel's runtime dependencies pull it\n{out.stderr[-2000:]}"
    )
    where = _ok(_run([python, "-c", "import edgeocr; print(edgeocr.__file__)"], tmp_path, 60), "import edgeocr")
    assert Path(where.strip()).is_relative_to(venv), f"edgeocr imported from {where.strip()}, not from the venv"


def test_the_installed_command_line_reads_a_sample(venv: Path, tmp_path: Path) -> None:
    reads = tmp_path / "reads.json"
    _ok(
        _run(
            [venv / "bin" / "edgeocr", "read", SAMPLES / SAMPLE, "--model", "default", "--json", reads], tmp_path, 120
        ),
        "edgeocr read",
    )
    results = json.loads(reads.read_text("utf-8"))["results"]
    assert [[line["text"] for line in result["lines"]] for result in results] == [[_label(SAMPLE)]], results


def test_the_installed_python_api_reads_a_sample(venv: Path, tmp_path: Path) -> None:
    code = (
        "from edgeocr import Reader\n"
        "r = Reader(model='default', detector=None)\n"
        f"print(r.read({str(SAMPLES / SAMPLE)!r}).lines[0].text)\n"
    )
    out = _ok(_run([venv / "bin" / "python", "-c", code], tmp_path, 120), "the Python API")
    assert out.strip() == _label(SAMPLE)
