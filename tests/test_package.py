"""The package's shape: light core dependencies, and an inference path that never needs torch."""

import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement

CORE_ALLOWED = {"numpy", "opencv-python-headless", "onnxruntime", "pydantic", "pyyaml", "typer"}


def test_core_dependencies_are_only_numpy_opencv_onnxruntime_and_config():
    reqs = [Requirement(r) for r in metadata.requires("edgeocr")]
    core = {r.name.lower() for r in reqs if r.marker is None}
    assert core == CORE_ALLOWED
    # torch only ever appears behind an extra, pinned exactly (any other spec pulls CUDA wheels).
    torch_reqs = [r for r in reqs if r.name == "torch"]
    assert torch_reqs and all(r.marker is not None and str(r.specifier) == "==2.13.0" for r in torch_reqs)


BLOCK_TORCH = """
import importlib, pkgutil, sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'lightning', 'torchvision'):
            raise ImportError(f'{name} is blocked: inference must not need it')
        return None

sys.meta_path.insert(0, BlockTorch())
import edgeocr, edgeocr.cli
names = ['edgeocr', 'edgeocr.cli']
for pkg_name in ('edgeocr.core', 'edgeocr.runtime'):
    pkg = importlib.import_module(pkg_name)
    for mod in pkgutil.walk_packages(pkg.__path__, pkg_name + '.'):
        importlib.import_module(mod.name)
        names.append(mod.name)
assert 'torch' not in sys.modules
print(len(names), 'modules imported without torch')
"""


def test_inference_path_imports_without_torch():
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[0]) >= 8


def test_cli_help_and_version_without_torch(cli):
    out = cli("--help")
    assert out.returncode == 0 and "synth" in out.stdout
    out = cli("version")
    assert out.returncode == 0 and out.stdout.strip() == metadata.version("edgeocr")
