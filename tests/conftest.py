import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed ``edgeocr`` command line in a subprocess (as a user would)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgeocr.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        **kwargs,
    )


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


def kill_at_first_checkpoint(script: str, config_file: Path, out: Path, timeout: float = 120) -> int:
    """Run the Python ``script`` (given ``config_file`` as its argument) in a subprocess, SIGKILL it as soon
    as ``out/checkpoints/last.ckpt`` exists, and return the global step that checkpoint holds."""
    import torch

    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(config_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    try:
        while not last.exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])


@pytest.fixture
def killed_run():
    """:func:`kill_at_first_checkpoint`: a training run killed with SIGKILL after its first checkpoint."""
    return kill_at_first_checkpoint
