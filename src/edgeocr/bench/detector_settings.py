"""``edgeocr study detector-settings``: a detector's input size and post-processing settings against
detection precision, recall, hmean and time per image, on annotated scene folders.

The settings of a shipped detector (its long side, box threshold and unclip ratio, in its sidecar)
are chosen with this study on synthetic validation scenes (``edgeocr synth scenes`` with a seed no
training run used), never on the real evaluation images; run it on those as well, for the record,
and say which set chose. Each ``--setting`` is a comma-separated list of
:class:`~edgeocr.core.detector_config.DetectorConfig` fields (``max_side=960,unclip_ratio=1.2``);
each is applied to the same ONNX model (:class:`~edgeocr.runtime.detector.OnnxDetector`'s
``overrides``) and every image is detected once, one image per call, after a warm-up image.
Scoring is :mod:`edgeocr.measure.detection_metrics`' at IoU 0.5 (ignored lines and non-exhaustive
images as there).

Usage: ``edgeocr study detector-settings --detector default --data build/synval --data
../shared/realdev/scenes --setting max_side=640 --setting max_side=960 --threads 2 --out
build/bench/detector-settings``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeocr.bench.ablation import run_command, write_json_and_markdown
from edgeocr.bench.report import markdown_table
from edgeocr.core.detector_config import DetectorConfig
from edgeocr.core.errors import DataError, EdgeOCRError
from edgeocr.core.images import load_image
from edgeocr.data.scene_annotations import SceneRecord, read_scene_annotations
from edgeocr.measure.detection_metrics import DetectionCounts, count_detections
from edgeocr.runtime.detector import OnnxDetector
from edgeocr.runtime.models import resolve_detector
from edgeocr.runtime.recognizer import EngineConfig

RESULT_JSON = "detector-settings.json"
RESULT_MD = "detector-settings.md"


def parse_setting(text: str) -> dict[str, Any]:
    """``"max_side=960,unclip_ratio=1.2"`` as DetectorConfig field values (JSON numbers; 'none' for None)."""
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key not in DetectorConfig.model_fields:
            raise EdgeOCRError(f"setting {text!r}: {part!r} is not FIELD=VALUE with a DetectorConfig field")
        values[key] = None if raw.lower() == "none" else json.loads(raw)
    return values


def load_scenes(folder: Path) -> tuple[list[SceneRecord], list[np.ndarray]]:
    """The annotated scenes of ``folder`` and their images, decoded once for every setting."""
    _, records, _ = read_scene_annotations(folder, strict=True)
    if not records:
        raise DataError(f"{folder}: no annotated scene")
    return records, [load_image(record.path) for record in records]


def score_setting(detector: OnnxDetector, records: Sequence[SceneRecord], images: Sequence[np.ndarray]) -> dict:
    """Detection counts and per-image latency of ``detector`` on one folder's scenes."""
    detector.detect(images[0])  # warm-up: session arenas and OpenCV's first calls
    counts, ms = DetectionCounts(), []
    for record, image in zip(records, images, strict=True):
        began = time.perf_counter()
        lines = detector.detect(image)
        ms.append((time.perf_counter() - began) * 1e3)
        counts += count_detections([line.poly for line in lines], record.polys, record.ignore, record.exhaustive)
    return {
        "images": len(records),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in counts.as_dict().items()},
        "ms_p50": round(float(np.percentile(ms, 50)), 2),
        "ms_p95": round(float(np.percentile(ms, 95)), 2),
    }


def run_study(detector: str, data: Sequence[Path], settings: Sequence[str], threads: int) -> dict[str, Any]:
    path = resolve_detector(detector)
    engine = EngineConfig(intra_op_threads=threads, inter_op_threads=1)
    scenes = {folder: load_scenes(folder) for folder in data}
    rows = []
    for text in settings or [""]:
        overrides = parse_setting(text)
        try:
            model = OnnxDetector(path, engine, overrides)
        except ValueError as exc:  # pydantic's ValidationError: a value out of range
            raise EdgeOCRError(f"setting {text!r}: {exc}") from None
        for folder, (records, images) in scenes.items():
            rows.append({"setting": text or "(sidecar)", "data": str(folder), **score_setting(model, records, images)})
    return {"detector": str(path), "threads": threads, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    header = ["setting", "data", "images", "P %", "R %", "H %", "p50 ms", "p95 ms"]
    rows = [
        [
            r["setting"],
            r["data"],
            str(r["images"]),
            f"{100 * r['precision']:.1f}",
            f"{100 * r['recall']:.1f}",
            f"{100 * r['hmean']:.1f}",
            f"{r['ms_p50']:.1f}",
            f"{r['ms_p95']:.1f}",
        ]
        for r in result["rows"]
    ]
    return f"Detector {result['detector']}, {result['threads']} threads\n\n" + markdown_table(header, rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="default", help="Shipped detector name or detector .onnx.")
    parser.add_argument("--data", type=Path, action="append", required=True, help="Annotated scene folder.")
    parser.add_argument("--setting", action="append", default=[], help="FIELD=VALUE,... (repeatable).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    def work() -> tuple[str, dict[str, Path]]:
        result = run_study(args.detector, args.data, args.setting, args.threads)
        text = markdown(result)
        return text, write_json_and_markdown(result, args.out / RESULT_JSON, args.out / RESULT_MD, text)

    return run_command(work)
