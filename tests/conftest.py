import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed ``edgeocr`` command line in a subprocess (as a user would)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgeocr.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, **kwargs)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def export_trainable():
    """A function that exports a freshly initialised (seeded) ``arch`` to ``path`` with its sidecar and ``.pt``
    weights, as a shipped model is: ``export_trainable("crnn_tiny", tmp / "m.onnx", charset=...)``."""
    import torch

    from edgeocr.models.export import export_onnx
    from edgeocr.models.factory import build_recognizer
    from edgeocr.models.weights import save_weights, weights_path

    def export(arch: str, path: Path, **overrides) -> Path:
        torch.manual_seed(0)
        network, cfg = build_recognizer(arch, **{"max_width": 256, **overrides})
        onnx = export_onnx(network.eval(), cfg, path)
        save_weights(network, cfg, weights_path(onnx))
        return onnx

    return export


@pytest.fixture(scope="session")
def sharpened_tiny_model(tmp_path_factory) -> str:
    """A crnn_tiny (max width 256) exported to ONNX, its head sharpened so that readings are not all blank."""
    import torch  # the training side makes the model; make test installs it, so no skip

    from edgeocr.core.recognizer_config import RecognizerConfig
    from edgeocr.models import build_from_config, export_onnx

    cfg = RecognizerConfig(arch="crnn_tiny", max_width=256)
    torch.manual_seed(0)
    model = build_from_config(cfg).eval()
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return str(export_onnx(model, cfg, tmp_path_factory.mktemp("model") / "tiny.onnx"))
