"""The model that ships in the package: present, small, self-describing, readable without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeocr.core.charset import ASCII_CHARSET, DEFAULT_CHARSET
from edgeocr.core.errors import ModelError
from edgeocr.core.sidecar import settings_sha256, sha256_hex
from edgeocr.models.weights import weights_path
from edgeocr.runtime.models import resolve_model, shipped_models
from edgeocr.runtime.recognizer import OnnxRecognizer
from edgeocr.train.finetune import resolve_init

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 5 * 1024 * 1024
# Models of an imported architecture (PP-OCRv6 small, 3 M parameters) may take up to 13 MB in fp32.
MAX_IMPORTED_BYTES = 13 * 1000 * 1000


def test_default_model_ships() -> None:
    assert "default" in shipped_models()


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_every_shipped_model_has_its_sidecar_weights_card_and_its_charset(name: str) -> None:
    path = resolve_model(name)
    recognizer = OnnxRecognizer(path)  # verifies the sidecar's checksums (bytes and settings) and signature
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["format_version"] == 2 and sidecar["settings_sha256"] == settings_sha256(sidecar)
    assert (ROOT / "docs" / "models" / f"{name}.md").is_file()  # its model card
    note = recognizer.sidecar.optimization
    derived = recognizer.sidecar.derived_from
    if derived is not None:
        # Derived from third-party weights: their licence text and notice ship in the package, and
        # fine-tuning starts from the .onnx itself (no .pt travels).
        assert path.stat().st_size <= MAX_IMPORTED_BYTES
        assert recognizer.config.charset in (DEFAULT_CHARSET, ASCII_CHARSET)
        licences = ROOT / "src" / "edgeocr" / "assets" / "licenses"
        assert (licences / "Apache-2.0.txt").is_file() and derived.licence == "Apache-2.0"
        assert (ROOT / "src" / derived.notice).is_file()
        assert resolve_init(name) == (path, path) and not weights_path(path).exists()
        return
    assert path.stat().st_size <= MAX_BYTES
    assert recognizer.config.charset == DEFAULT_CHARSET
    if note is None:
        assert weights_path(path).is_file()  # fine-tuning starts from these
    else:
        # An optimised model is made from a shipped trained one, the very bytes that ship beside it,
        # and fine-tuning is sent there.
        source = resolve_model(note.source)
        assert note.source_sha256 == sha256_hex(source.read_bytes())
        assert weights_path(source).is_file() and not weights_path(path).exists()
        with pytest.raises(ModelError, match=f"fine-tune with --init {note.source}"):
            resolve_init(name)


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_model_reads_the_bundled_samples_without_torch(name: str) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edgeocr.core.images import load_image\n"
        "from edgeocr.data.labels import read_labels\n"
        "from edgeocr.runtime.models import resolve_model\n"
        "from edgeocr.runtime.recognizer import OnnxRecognizer\n"
        f"samples, _ = read_labels({str(ROOT / 'samples' / 'lines')!r})\n"
        f"lines = OnnxRecognizer(resolve_model({name!r})).recognize([load_image(s.path) for s in samples])\n"
        "print(sum(bool(l.text) for l in lines), len(samples))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    read, total = int(out[0]), int(out[1])
    assert total == 10 and read == total  # every sample gives a non-empty read
