"""Which preprocessing helps which recogniser: every preset on every crop, per category.

For each engine (our models and the peers of :mod:`edgeocr.bench.peers`) and each preprocessing
pipeline (a preset of :mod:`edgeocr.core.preprocess` or any pipeline spec), every crop of the
labelled folders is preprocessed and read whole, one at a time, and scored by
:func:`edgeocr.measure.evaluate.evaluate_samples` (strict and relaxed character accuracy and exact
match, per category, as ``edgeocr eval``). Each category is also scored under its own rule
(:data:`SCORING`, from realdev's README: relaxed for containers and plates, case-insensitive for
receipts, strict otherwise); the best preset per engine and category is picked on that score.
The cost of each pipeline per crop is timed separately on the same crops (OpenCV, on the CPU).

Outputs (``--out``): ``ablation.json`` (settings, environment, costs, every cell's figures and
every prediction, so the figures can be recomputed) and ``ablation.md`` (one matrix per engine:
rows are categories, columns presets, the best marked; then the best preset per engine and
category, and the costs).

Usage::

    edgeocr study ablation --data ../shared/realdev/industrial --data ../shared/realdev/words \\
        --presets none,dotmatrix,low_contrast,binarize,uneven_light --models default \\
        --peers ppocrv4,ppocrv6,easyocr,tesseract --threads 2 --out build/bench/ablation

``--presets`` items are separated by commas; an item is a preset name or a pipeline spec
(``gray|clahe:clip=3,tile=4``: a ``key=value`` after a comma continues the step before it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from edgeocr.bench.harness import split_names
from edgeocr.bench.peers import EngineNotInstalled, RecognitionEngine, make_engines
from edgeocr.bench.report import markdown_table
from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.preprocess import Pipeline, parse_pipeline
from edgeocr.data.labels import LabelledImage, read_labels
from edgeocr.measure.evaluate import evaluate_samples, load_images
from edgeocr.measure.metrics import accuracy, relaxed
from edgeocr.measure.resources import environment

DEFAULT_PRESETS = ("none", "dotmatrix", "low_contrast", "binarize", "uneven_light")
ABLATION_JSON = "ablation.json"
ABLATION_MD = "ablation.md"
COST_REPEATS = 3

# How realdev's README says each category is scored; categories not listed are scored strictly.
SCORING: dict[str, str] = {
    "container": "relaxed",
    "container_vertical": "relaxed",
    "plate_br": "relaxed",
    "plate_eu": "relaxed",
    "plate_us": "relaxed",
    "sroie_lines": "caseless",
    "dotmatrix_medicine": "strict",
    "uw3_lines": "strict",
    "ic15": "strict",
}
NORMALISERS: dict[str, Callable[[str], str]] = {"strict": str, "relaxed": relaxed, "caseless": str.upper}


def scoring_rule(category: str) -> str:
    """'strict', 'relaxed' or 'caseless': how ``category`` is scored (:data:`SCORING`)."""
    return SCORING.get(category, "strict")


def rule_scores(labels: Sequence[str], predictions: Sequence[str], rules: Sequence[str]) -> dict[str, float]:
    """Character accuracy and exact match, each pair compared after its own rule's normalisation."""
    norm_labels = [NORMALISERS[rule](text) for text, rule in zip(labels, rules, strict=True)]
    norm_predictions = [NORMALISERS[rule](text) for text, rule in zip(predictions, rules, strict=True)]
    scores = accuracy(norm_labels, norm_predictions)
    return {"char_accuracy": round(scores["char_accuracy"], 6), "exact_match": round(scores["exact_match"], 6)}


def split_presets(values: Sequence[str] | str) -> list[str]:
    """Preset names and pipeline specs from comma-separated (or repeated) ``--presets`` values.

    A ``key=value`` item continues the step before it (``clahe:clip=3,tile=4`` stays whole)."""
    values = [values] if isinstance(values, str) else list(values)
    items: list[str] = []
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            continues = "=" in part and ":" not in part and "|" not in part
            if continues and items:
                items[-1] = f"{items[-1]},{part}"
            else:
                items.append(part)
    if not items:
        raise EdgeOCRError("--presets needs at least one preset name or pipeline spec, e.g. none,dotmatrix")
    if len(set(items)) != len(items):
        raise EdgeOCRError(f"--presets lists a pipeline more than once: {items}")
    return items


def build_pipelines(specs: Sequence[str]) -> dict[str, Pipeline]:
    """One pipeline per spec, keyed by the spec as given; PipelineError names a bad one."""
    return {spec: parse_pipeline(spec) for spec in specs}


@dataclass(frozen=True)
class Dataset:
    """A labelled folder: its name (the folder's), path and samples."""

    name: str
    path: Path
    samples: list[LabelledImage]


def load_datasets(paths: Sequence[Path | str]) -> list[Dataset]:
    """Read each folder's ``labels.tsv`` (DataError naming ``file:line`` for a bad line or missing file)."""
    if not paths:
        raise EdgeOCRError("name at least one labelled folder with --data")
    datasets = []
    for path in map(Path, paths):
        samples, _ = read_labels(path, strict=True)
        datasets.append(Dataset(path.name or str(path), path, samples))
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise EdgeOCRError(f"--data folders must have different names (they label the rows), got {names}")
    return datasets


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4)


def pipeline_costs(
    pipelines: dict[str, Pipeline], images: Sequence[np.ndarray], repeats: int = COST_REPEATS
) -> dict[str, dict[str, float]]:
    """Milliseconds per crop of each pipeline: per crop the median of ``repeats`` runs, then p50/p95/mean."""
    costs = {}
    for label, pipeline in pipelines.items():
        per_crop = []
        for image in images:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                pipeline.apply(image)
                times.append((time.perf_counter() - start) * 1000)
            per_crop.append(float(np.median(times)))
        costs[label] = {
            "spec": pipeline.spec(),
            "ms_p50": _percentile(per_crop, 50),
            "ms_p95": _percentile(per_crop, 95),
            "ms_mean": round(float(np.mean(per_crop)), 4),
        }
    return costs


def score_cell(dataset: Dataset, evaluated: dict) -> dict:
    """One engine x pipeline x dataset: eval's figures per category plus each category's rule score."""
    predictions = [p["prediction"] for p in evaluated["predictions"]]
    labels = [s.text for s in dataset.samples]
    rules = [scoring_rule(s.category) for s in dataset.samples]
    per_category = {}
    for category, figures in evaluated["per_category"].items():
        idx = [i for i, s in enumerate(dataset.samples) if s.category == category]
        per_category[category] = {
            **{k: v for k, v in figures.items() if not k.startswith("latency")},
            "scoring": scoring_rule(category),
            "scored": rule_scores([labels[i] for i in idx], [predictions[i] for i in idx], [rules[i] for i in idx]),
        }
    return {
        "n": evaluated["n"],
        "scored": rule_scores(labels, predictions, rules),
        "per_category": per_category,
        "read_ms_p50": evaluated["latency_ms_p50"],
        "predictions": predictions,
    }


def _preprocessed_read(engine: RecognitionEngine, pipeline: Pipeline) -> Callable[[np.ndarray], tuple[str, float]]:
    return lambda image: engine.read(pipeline.apply(image))


def ablate_engine(
    engine: RecognitionEngine,
    datasets: Sequence[Dataset],
    pipelines: dict[str, Pipeline],
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Load ``engine`` and read every dataset under every pipeline; 'not installed' when it cannot load."""
    try:
        engine.load()
    except EngineNotInstalled as exc:
        return {"name": engine.name, "status": "not installed", "reason": str(exc)}
    record: dict = {
        "name": engine.name,
        "status": "ok",
        "version": engine.version,
        "threads": engine.threads,
        "cells": {},
    }
    for label, pipeline in pipelines.items():
        cells = {}
        for dataset in datasets:
            cells[dataset.name] = score_cell(
                dataset, evaluate_samples(_preprocessed_read(engine, pipeline), dataset.samples)
            )
        record["cells"][label] = cells
        if progress:
            summary = ", ".join(f"{name} {100 * cell['scored']['char_accuracy']:.1f}%" for name, cell in cells.items())
            progress(f"{engine.name} / {label}: scored char accuracy {summary}")
    record["best"] = best_presets(record, datasets)
    return record


def _rows(datasets: Sequence[Dataset]) -> list[tuple[str, str, str | None]]:
    """(row key, dataset name, category or None for the dataset's ALL) for every matrix row."""
    rows = []
    for dataset in datasets:
        for category in sorted({s.category for s in dataset.samples}):
            rows.append((f"{dataset.name}/{category or '(top level)'}", dataset.name, category))
        rows.append((f"{dataset.name}/ALL", dataset.name, None))
    return rows


def _row_scores(record: dict, label: str, dataset: str, category: str | None) -> dict[str, float]:
    cell = record["cells"][label][dataset]
    return cell["scored"] if category is None else cell["per_category"][category]["scored"]


def _mean_scores(record: dict, label: str) -> dict[str, float]:
    """Unweighted mean over every category of every dataset (each category counts once)."""
    scores = [
        category["scored"] for cell in record["cells"][label].values() for category in cell["per_category"].values()
    ]
    return {k: round(float(np.mean([s[k] for s in scores])), 6) for k in ("char_accuracy", "exact_match")}


def _winners(candidates: dict[str, dict[str, float]]) -> list[str]:
    """Labels with the highest char accuracy, ties broken by exact match; all that still tie."""
    key = {label: (round(s["char_accuracy"], 6), round(s["exact_match"], 6)) for label, s in candidates.items()}
    top = max(key.values())
    return [label for label, k in key.items() if k == top]


def best_presets(record: dict, datasets: Sequence[Dataset]) -> dict[str, list[str]]:
    """For every row (``dataset/category``, ``dataset/ALL``) and ``MEAN``: the best pipeline(s)."""
    labels = list(record["cells"])
    best = {
        key: _winners({label: _row_scores(record, label, ds, cat) for label in labels})
        for key, ds, cat in _rows(datasets)
    }
    best["MEAN"] = _winners({label: _mean_scores(record, label) for label in labels})
    return best


def run_ablation(
    datasets: Sequence[Dataset],
    engines: Sequence[RecognitionEngine],
    pipelines: dict[str, Pipeline],
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Time the pipelines, then ablate every engine; returns what ``ablation.json`` holds."""
    if not engines:
        raise EdgeOCRError("nothing to ablate: name at least one model (--models) or peer (--peers)")
    images = [image for dataset in datasets for image in load_images(dataset.samples)]
    if progress:
        progress(f"timing {len(pipelines)} pipelines on {len(images)} crops")
    costs = pipeline_costs(pipelines, images)
    records = []
    for engine in engines:
        if progress:
            progress(f"{engine.name}: reading {len(images)} crops x {len(pipelines)} pipelines")
        records.append(ablate_engine(engine, datasets, pipelines, progress))
    return {
        "threads": threads,
        "datasets": {
            d.name: {
                "path": str(d.path),
                "n": len(d.samples),
                "categories": {
                    c: {"n": sum(s.category == c for s in d.samples), "scoring": scoring_rule(c)}
                    for c in sorted({s.category for s in d.samples})
                },
                "files": [s.file for s in d.samples],
                "labels": [s.text for s in d.samples],
            }
            for d in datasets
        },
        "pipelines": costs,
        "environment": environment({r["name"]: r.get("version") or r["status"] for r in records}),
        "engines": records,
    }


# --- report ------------------------------------------------------------------------------------


def _cell_text(scores: dict[str, float], best: bool) -> str:
    text = f"{100 * scores['char_accuracy']:.1f} / {100 * scores['exact_match']:.0f}"
    return f"**{text}**" if best else text


def engine_matrix(result: dict, record: dict) -> tuple[list[str], list[list[str]]]:
    """Rows: categories (then each dataset's ALL and the MEAN of all categories); columns: pipelines."""
    labels = list(record["cells"])
    header = ["category (scoring)", "n", *labels]
    rows = []
    for dataset, info in result["datasets"].items():
        for category, cat_info in info["categories"].items():
            key = f"{dataset}/{category or '(top level)'}"
            rows.append(
                [f"{key} ({cat_info['scoring']})", str(cat_info["n"])]
                + [
                    _cell_text(_row_scores(record, label, dataset, category), label in record["best"][key])
                    for label in labels
                ]
            )
        key = f"{dataset}/ALL"
        rows.append(
            [key, str(info["n"])]
            + [_cell_text(_row_scores(record, label, dataset, None), label in record["best"][key]) for label in labels]
        )
    rows.append(
        ["MEAN of categories", "-"]
        + [_cell_text(_mean_scores(record, label), label in record["best"]["MEAN"]) for label in labels]
    )
    return header, rows


def crops_changed(
    result: dict, record: dict, dataset: str, category: str | None, label: str, baseline: str
) -> tuple[int, int]:
    """(crops read better, crops read worse) under ``label`` than under ``baseline``: edit distance to the
    label after the category's rule; ``category`` None: the whole dataset."""
    info = result["datasets"][dataset]
    cells = record["cells"]
    better = worse = 0
    for file, text, before, after in zip(
        info["files"],
        info["labels"],
        cells[baseline][dataset]["predictions"],
        cells[label][dataset]["predictions"],
        strict=True,
    ):
        sample_category = Path(file).parts[0] if len(Path(file).parts) > 1 else ""
        if category is not None and sample_category != category:
            continue
        norm = NORMALISERS[scoring_rule(sample_category)]
        change = Levenshtein.distance(norm(text), norm(before)) - Levenshtein.distance(norm(text), norm(after))
        better += change > 0
        worse += change < 0
    return better, worse


def _gain(result: dict, record: dict, key: str, dataset: str | None, category: str | None, baseline: str) -> str:
    """The best pipeline(s) of a row, their char-accuracy gain over ``baseline`` in points and, for
    a folder's rows, how many crops they read better and worse than ``baseline``."""
    winners = record["best"][key]
    if len(winners) == len(record["cells"]) > 1:
        return "all equal"
    if baseline not in record["cells"]:
        return ", ".join(winners)
    if baseline in winners:  # nothing beats no preprocessing; name the ties briefly
        others = [w for w in winners if w != baseline]
        return baseline + (
            "" if not others else f" (= {', '.join(others)})" if len(others) <= 2 else f" (= {len(others)} others)"
        )
    score = (
        (lambda label: _mean_scores(record, label))
        if dataset is None
        else (lambda label: _row_scores(record, label, dataset, category))
    )
    gain = 100 * (score(winners[0])["char_accuracy"] - score(baseline)["char_accuracy"])
    if dataset is None:
        return ", ".join(winners) + f" (+{gain:.1f})"
    better, worse = crops_changed(result, record, dataset, category, winners[0], baseline)
    return ", ".join(winners) + f" (+{gain:.1f}; {better} better, {worse} worse)"


def best_table(result: dict, baseline: str = "none") -> tuple[list[str], list[list[str]]]:
    """Rows: categories; columns: engines; cells: the best pipeline(s) and the gain over ``baseline``."""
    records = [r for r in result["engines"] if r["status"] == "ok"]
    header = ["category", *[r["name"] for r in records]]
    rows = []
    for dataset, info in result["datasets"].items():
        for category in [*info["categories"], None]:
            key = f"{dataset}/{'ALL' if category is None else category or '(top level)'}"
            rows.append([key] + [_gain(result, r, key, dataset, category, baseline) for r in records])
    rows.append(["MEAN of categories"] + [_gain(result, r, "MEAN", None, None, baseline) for r in records])
    return header, rows


def markdown(result: dict) -> str:
    env = result["environment"]
    folders = ", ".join(f"`{d['path']}` ({d['n']})" for d in result["datasets"].values())
    lines = [
        "# Preprocessing ablation",
        "",
        f"Crops of {folders}, each read whole "
        f"(recognition only), one at a time, {result['threads']} threads (Tesseract 1); "
        f"{env['cpu']['model']}, {env['date']}, commit {(env['git'].get('commit') or 'unknown')[:12]}"
        f"{' (modified)' if env['git'].get('dirty') else ''}.",
        "",
        "Cells: character accuracy % / exact match % under each category's scoring rule (realdev's README: "
        "strict; relaxed = upper case, A-Z and 0-9 only; caseless = upper case). **Bold**: the best pipeline "
        "for that engine and row (highest character accuracy, then exact match; ties all bold). "
        "ALL pools a folder's crops; MEAN is the unweighted mean of the categories. "
        "Strict and relaxed figures for every cell are in ablation.json.",
        "",
        "## Pipelines and their cost per crop",
        "",
        markdown_table(
            ["pipeline", "steps", "ms/crop p50", "p95", "mean"],
            [
                [label, f"`{c['spec']}`", f"{c['ms_p50']:.3f}", f"{c['ms_p95']:.3f}", f"{c['ms_mean']:.3f}"]
                for label, c in result["pipelines"].items()
            ],
        ),
        "",
        "## Best pipeline per engine and category",
        "",
        "Gain over none in points of character accuracy, and how many crops the best pipeline reads better "
        "and worse than none (edit distance to the label): a gain made of a few crops, or of many crops "
        "better and almost as many worse, is not one to rely on.",
        "",
        markdown_table(*best_table(result)),
    ]
    for record in result["engines"]:
        lines += ["", f"## {record['name']}", ""]
        if record["status"] != "ok":
            lines.append(f"{record['status']}: {record.get('reason', '')}")
            continue
        lines += [
            f"{record['version']}, {record['threads']} thread(s).",
            "",
            markdown_table(*engine_matrix(result, record)),
        ]
    return "\n".join(lines) + "\n"


def write_json_and_markdown(result: dict, json_path: Path, markdown_path: Path, text: str) -> dict[str, Path]:
    """Write ``result`` as JSON and ``text`` as Markdown, each atomically; returns their paths."""
    atomic_write_bytes(json_path, (json.dumps(result, indent=1, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(markdown_path, text.encode())
    return {"json": json_path, "markdown": markdown_path}


def write_outputs(result: dict, out_dir: Path | str) -> dict[str, Path]:
    """Write ``ablation.json`` and ``ablation.md`` atomically into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    return write_json_and_markdown(result, out_dir / ABLATION_JSON, out_dir / ABLATION_MD, markdown(result))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True, help="folder with labels.tsv (repeatable)")
    parser.add_argument(
        "--presets",
        action="append",
        default=None,
        help=f"comma-separated preset names or pipeline specs (default {','.join(DEFAULT_PRESETS)})",
    )
    parser.add_argument("--models", action="append", default=[], help="our models: shipped names or .onnx paths")
    parser.add_argument("--peers", action="append", default=[], help="easyocr, ppocrv4, ppocrv6, tesseract")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine and for OpenCV")
    parser.add_argument("--out", type=Path, required=True, help="folder for ablation.json and ablation.md")
    args = parser.parse_args(argv)

    def work() -> tuple[str, dict[str, Path]]:
        pipelines = build_pipelines(split_presets(args.presets or list(DEFAULT_PRESETS)))
        datasets = load_datasets(args.data)
        engines = make_engines(split_names(args.models), split_names(args.peers), args.threads)
        cv2.setNumThreads(args.threads)
        result = run_ablation(
            datasets, engines, pipelines, threads=args.threads, progress=lambda m: print(m, flush=True)
        )
        return markdown(result), write_outputs(result, args.out)

    return run_command(work)


def run_command(work: Callable[[], tuple[str, dict[str, Path]]]) -> int:
    """A benchmark script's ending: print its Markdown and the files written (0), or a one-line error (2)."""
    try:
        text, paths = work()
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {paths['json']} and {paths['markdown']}")
    return 0
