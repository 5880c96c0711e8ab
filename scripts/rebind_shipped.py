#!/usr/bin/env python3
"""Bind the settings of every shipped recogniser and detector to its model (``settings_sha256``).

    .venv/bin/python scripts/rebind_shipped.py [--check]

For each ``src/edgeocr/assets/{models,detectors}/NAME.onnx``: checks the ONNX bytes against the
sidecar's ``onnx_sha256`` and writes the sidecar again with a fresh ``settings_sha256`` (format 2),
through :func:`edgeocr.core.rebind.rebind_model`, the code behind ``edgeocr export --rebind``. The
``.onnx`` files are never written (their SHA-256 is compared before and after), and no figure of a
sidecar changes: only ``format_version`` and ``settings_sha256``. Then each model is loaded as the
runtime loads it. ``--check`` writes nothing: it fails when a sidecar is not bound.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from shipping import ROOT

ASSETS = ROOT / "src" / "edgeocr" / "assets"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that every shipped sidecar is bound")
    args = parser.parse_args()

    from edgeocr.core.detector_config import load_detector_sidecar
    from edgeocr.core.rebind import rebind_model
    from edgeocr.core.sidecar import SETTINGS_FIELD, load_sidecar, sidecar_path
    from edgeocr.runtime.detector import OnnxDetector
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

    engine = EngineConfig(intra_op_threads=1)
    failures = 0
    for folder, load, runtime in (
        ("models", load_sidecar, OnnxRecognizer),
        ("detectors", load_detector_sidecar, OnnxDetector),
    ):
        for model in sorted((ASSETS / folder).glob("*.onnx")):
            before = hashlib.sha256(model.read_bytes()).hexdigest()
            old = json.loads(sidecar_path(model).read_text(encoding="utf-8"))
            if args.check:
                try:
                    load(sidecar_path(model))
                except Exception as exc:
                    print(f"NOT BOUND {model.relative_to(ROOT)}: {exc}")
                    failures += 1
                    continue
                changed = False
            else:
                _, changed = rebind_model(model)
            new = json.loads(sidecar_path(model).read_text(encoding="utf-8"))
            ignored = {"format_version", SETTINGS_FIELD}
            assert {k: v for k, v in old.items() if k not in ignored} == {
                k: v for k, v in new.items() if k not in ignored
            }, f"{model}: a setting changed"
            assert hashlib.sha256(model.read_bytes()).hexdigest() == before, f"{model}: the ONNX bytes changed"
            runtime(model, engine)  # loads as the runtime does: settings, checksum, graph
            print(
                f"{'rebound' if changed else 'bound  '} {model.relative_to(ROOT)}: onnx {before[:12]}, "
                f"settings {new[SETTINGS_FIELD][:12]}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
