#!/usr/bin/env python3
"""Ship a trained line detector as a package model and measure it for its model card.

    .venv/bin/python scripts/ship_detector.py --run RUN_DIR --name fast [--realdev ../shared/realdev]

1. copies RUN_DIR/model.{onnx,json} to src/edgeocr/assets/detectors/NAME.{onnx,json} (the sidecar's
   checksum still matches: the ONNX bytes are unchanged; a sidecar of format 1 is bound to the model)
   and writes the runtime settings asked for into the sidecar, bound again to the model;
2. renders synthetic scenes that no training run saw (their own seed, 300 by default) and scores
   the shipped default recogniser with this detector on them (``edgeocr eval --mode e2e``), beside
   the same recogniser with PP-OCRv4's detector;
3. does the same on realdev/scenes when that folder exists (evaluation only: nothing from it is
   copied or kept besides the figures);
4. writes build/ship/detector-NAME/*.json and a summary (summary.json) that the model card quotes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shipping import ROOT, bind_copied_sidecar, edgeocr, ship_parser

ASSETS = ROOT / "src" / "edgeocr" / "assets" / "detectors"
# Far from the training seeds (0 and its validation seed 1000003) and from the recogniser's test seed.
TEST_SEED = 20261122
KEYS = (
    "n",
    "precision",
    "recall",
    "hmean",
    "char_accuracy",
    "exact_match",
    "char_accuracy_relaxed",
    "exact_match_relaxed",
    "latency_ms_p50",
    "latency_ms_p95",
)


def score(data: Path, detector: str, out: Path, threads: int) -> dict:
    edgeocr(
        "eval",
        "--mode",
        "e2e",
        "--data",
        str(data),
        "--detector",
        detector,
        "--threads",
        str(threads),
        "--json",
        str(out),
        "--quiet",
    )
    result = json.loads(out.read_text())
    return {k: result[k] for k in KEYS if k in result}


def set_runtime(sidecar_file: Path, **settings: float | None) -> None:
    """Rewrite a detector sidecar with other runtime settings (``max_side``, thresholds; validated; the
    ONNX bytes are untouched; ``to_json`` binds the new settings to them). Settings given as None keep
    the run's value."""
    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.core.detector_config import DetectorSidecar, load_detector_sidecar

    data = load_detector_sidecar(sidecar_file).model_dump(mode="json")
    data["config"].update({k: v for k, v in settings.items() if v is not None})
    atomic_write_bytes(sidecar_file, DetectorSidecar.model_validate(data).to_json().encode("utf-8"))


def main() -> None:
    parser = ship_parser(__doc__)
    parser.add_argument("--test-scenes", type=int, default=300)
    parser.add_argument(
        "--max-side",
        type=int,
        help="long side the runtime resizes images to, written into the "
        "shipped sidecar (default: the run's, i.e. its training input size)",
    )
    parser.add_argument(
        "--binary-threshold",
        type=float,
        help="probability a pixel needs to be text (default: "
        "the run's); choose it on validation scenes, never on the test scenes",
    )
    parser.add_argument(
        "--box-threshold", type=float, help="mean probability a box needs to be kept (default: the run's); same rule"
    )
    args = parser.parse_args()

    ASSETS.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        shutil.copyfile(args.run / f"model{suffix}", ASSETS / f"{args.name}{suffix}")
    shipped = ASSETS / f"{args.name}.onnx"
    bind_copied_sidecar(shipped)
    set_runtime(
        shipped.with_suffix(".json"),
        max_side=args.max_side,
        binary_threshold=args.binary_threshold,
        box_threshold=args.box_threshold,
    )
    out = ROOT / "build" / "ship" / f"detector-{args.name}"
    out.mkdir(parents=True, exist_ok=True)

    test_dir = ROOT / "build" / f"synth-scenes-test-{TEST_SEED}-{args.test_scenes}"
    if not (test_dir / "annotations.jsonl").is_file():
        edgeocr(
            "synth",
            "scenes",
            "--count",
            str(args.test_scenes),
            "--seed",
            str(TEST_SEED),
            "--workers",
            "2",
            "--out",
            str(test_dir),
            "--overwrite",
            "--quiet",
        )
    sets = {"synthetic_test": test_dir}
    if (args.realdev / "scenes" / "annotations.jsonl").is_file():
        sets["realdev_scenes"] = args.realdev / "scenes"
    report = {
        "model": str(shipped.relative_to(ROOT)),
        "onnx_bytes": shipped.stat().st_size,
        "runtime": {
            k: json.loads(shipped.with_suffix(".json").read_text())["config"][k]
            for k in ("max_side", "binary_threshold", "box_threshold")
        },
        "training": json.loads((args.run / "metrics.json").read_text()),
        "test_seed": TEST_SEED,
    }
    for name, data in sets.items():
        report[name] = {
            "ours": score(data, str(shipped), out / f"{name}.json", args.threads),
            "ppocrv4-det": score(data, "rapidocr", out / f"{name}.ppocrv4-det.json", args.threads),
        }
    (out / "summary.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "training"}, indent=1))


if __name__ == "__main__":
    main()
