"""What format-constrained decoding gains on real container and dot-matrix crops.

Each crop is read twice by one :class:`~edgeocr.runtime.reader.Reader` (``mode='whole'``): freely
(``ReadOptions(formats=())``) and under the scenario's formats, which the reader decodes with
:func:`edgeocr.core.formats.decode_constrained` (a constrained CTC prefix beam search, never a
filter on the free read). Both reads are scored under the category's rule (realdev's README:
relaxed for containers, strict for dot-matrix; see :mod:`edgeocr.bench.ablation`). A read for
which no string fits any format is a "no valid read": the reader returns an empty text (scored as
such, every character missed) and keeps the free read in ``raw_text``.

Reported per scenario and category: character accuracy and exact match without and with formats,
the number of 'no valid read' rejections, the accepted reads that are wrong (``LineRead.valid``
true but the text differs from the label) without and with formats, and the decode time per line
(p50 / p95 in ms: the greedy decoder of the free read against the constrained search, on the same
network outputs, the median of ``--repeats`` runs per line after a warm-up pass that builds the
formats' lazy automaton).

The scenarios' formats (:data:`SCENARIOS`) were written from the *kinds* of codes in the
categories (container door markings; lot, batch and expiry lines of medicine packs), as a user who
knows the lines would declare them, not one pattern per label; but they were written looking at
the evaluation labels' shapes, so the gain they show is an optimistic estimate.

Usage: ``edgeocr study format-gain --data ../shared/realdev/industrial --out build/bench/format-gain``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeocr.bench.ablation import NORMALISERS, rule_scores, run_command, scoring_rule, write_json_and_markdown
from edgeocr.bench.report import markdown_table
from edgeocr.core.errors import DataError, EdgeOCRError
from edgeocr.core.formats import FormatSet
from edgeocr.data.labels import read_labels
from edgeocr.measure.evaluate import load_images
from edgeocr.measure.resources import environment
from edgeocr.runtime.reader import CompiledFormats, LineRead, Reader, ReaderConfig, ReadOptions
from edgeocr.runtime.recognizer import EngineConfig

FORMAT_GAIN_JSON = "format_gain.json"
FORMAT_GAIN_MD = "format_gain.md"
FREE = ReadOptions(formats=())
FITTING_ROW = "ALL, labels fitting a format"


@dataclass(frozen=True)
class Scenario:
    """Crops of some categories read under a set of formats a user would declare for them."""

    name: str
    categories: tuple[str, ...]
    formats: tuple[str, ...]
    note: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "container: iso6346",
        ("container", "container_vertical"),
        ("iso6346",),
        "the built-in alone: full codes only, so the size/type lines and split codes cannot fit",
    ),
    Scenario(
        "container: door markings",
        ("container", "container_vertical"),
        (
            "iso6346",  # owner code, serial and check digit, in one line
            "[A-Z]{3}[UJZ]",  # owner code and category on a line of its own
            "[0-9]{6} ?[0-9]",  # serial and check digit on a line of their own
            "[0-9A-Z]{2}[A-Z][0-9A-Z]",  # ISO 6346 size and type code (22G1, 45R1, L5G1)
        ),
        "what a port camera sees on a door: the code, whole or split, and the size/type code",
    ),
    Scenario(
        "dotmatrix: medicine codes",
        ("dotmatrix_medicine",),
        (
            "[A-Z][0-9]{5,6} {MM}/{YY}",  # batch letter and digits, then the expiry
            "EXP:? ({MM}/{YYYY}|{YYYY}-{MM}|{MM} {YYYY})",  # expiry lines in their usual spellings
            "LOT[ #]?[A-Z0-9]{4,12}( EXP {MM}/{YYYY})?",  # lot number, maybe followed by the expiry
            "BEST IF USED BY {MON} {YYYY}",
            "{MM}/({YY}|{YYYY})",  # a bare expiry date
            "[0-9]{2,3}[A-Z][0-9]{2,3}",  # short batch codes such as 17N144
        ),
        "lot, batch and expiry lines of medicine packs; a country name and a licence number have no format",
    ),
)


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _wrong_accepted(lines: Sequence[LineRead], labels: Sequence[str], rule: str) -> int:
    norm = NORMALISERS[rule]
    return sum(line.valid and norm(line.text) != norm(label) for line, label in zip(lines, labels, strict=True))


def _summary(
    labels: list[str],
    free: list[LineRead],
    constrained: list[LineRead],
    rule: str,
    free_ms: list[float],
    format_ms: list[float],
) -> dict:
    rules = [rule] * len(labels)
    return {
        "n": len(labels),
        "scoring": rule,
        "free": {
            **rule_scores(labels, [line.text for line in free], rules),
            "accepted": sum(line.valid for line in free),
            "wrong_accepted": _wrong_accepted(free, labels, rule),
            "decode_ms_p50": _percentile(free_ms, 50),
            "decode_ms_p95": _percentile(free_ms, 95),
        },
        "formats": {
            **rule_scores(labels, [line.text for line in constrained], rules),
            "accepted": sum(line.valid for line in constrained),
            "wrong_accepted": _wrong_accepted(constrained, labels, rule),
            "no_valid_read": sum(line.format is None for line in constrained),
            "decode_ms_p50": _percentile(format_ms, 50),
            "decode_ms_p95": _percentile(format_ms, 95),
        },
    }


def run_scenario(scenario: Scenario, data_dir: Path, model: str, threads: int, repeats: int) -> dict | None:
    """Read the scenario's crops of ``data_dir`` without and with its formats; None when it has no crops."""
    samples, _ = read_labels(data_dir, strict=True)
    samples = [s for s in samples if s.category in scenario.categories]
    if not samples:
        return None
    images = load_images(samples)
    config = ReaderConfig(
        model=model, engine=EngineConfig(intra_op_threads=threads), formats=scenario.formats, mode="whole"
    )
    reader = Reader(config)
    free = [reader.read(image, options=FREE)[0] for image in images]
    constrained = [reader.read(image)[0] for image in images]

    # Decode times on the same network outputs: the reader's matcher class with the reader's settings.
    matcher, recognizer = CompiledFormats(scenario.formats), reader.recognizer
    charset = recognizer.config.charset_obj
    probs = [recognizer.recognize_probs([image])[0] for image in images]
    for line_probs, line in zip(probs, constrained, strict=True):  # warm-up; also checks it is the reader's path
        match = matcher.match(line_probs, charset, scenario.formats)
        if match.text != line.text:
            raise EdgeOCRError(f"the timed matcher read {match.text!r} where the reader read {line.text!r}")
    free_ms = [_median_ms(lambda p=p: recognizer.decode(p), repeats) for p in probs]
    format_ms = [_median_ms(lambda p=p: matcher.match(p, charset, scenario.formats), repeats) for p in probs]

    # Rows: each category, all crops, and the crops whose label fits a format (where formats can help;
    # the others can only be rejected or forced into a wrong fit).
    fits = [FormatSet(list(scenario.formats)).match(s.text) is not None for s in samples]
    groups = {c: [i for i, s in enumerate(samples) if s.category == c] for c in scenario.categories}
    groups = {c: idx for c, idx in groups.items() if idx}
    groups["ALL"] = list(range(len(samples)))
    groups[FITTING_ROW] = [i for i in range(len(samples)) if fits[i]]
    rows = {}
    for category, idx in groups.items():
        if not idx:
            continue
        rule = scoring_rule(samples[idx[0]].category)
        rows[category] = _summary(
            [samples[i].text for i in idx],
            [free[i] for i in idx],
            [constrained[i] for i in idx],
            rule,
            [free_ms[i] for i in idx],
            [format_ms[i] for i in idx],
        )
    return {
        "name": scenario.name,
        "formats": list(scenario.formats),
        "note": scenario.note,
        "rows": rows,
        "reads": [
            {
                "file": s.file,
                "label": s.text,
                "label_fits": fit,
                "free": f.text,
                "free_confidence": round(f.confidence, 4),
                "formats": c.text,
                "format": c.format,
                "valid": c.valid,
                "confidence": round(c.confidence, 4),
            }
            for s, f, c, fit in zip(samples, free, constrained, fits, strict=True)
        ],
    }


def run_format_gain(
    data_dir: Path | str,
    model: str = "default",
    threads: int = 1,
    repeats: int = 5,
    scenarios: Sequence[Scenario] = SCENARIOS,
) -> dict:
    """Every scenario with crops in ``data_dir``; DataError when none has any."""
    if repeats < 1 or threads < 0:
        raise EdgeOCRError("--repeats must be at least 1 and --threads at least 0")
    data_dir = Path(data_dir)
    results = [r for r in (run_scenario(s, data_dir, model, threads, repeats) for s in scenarios) if r is not None]
    if not results:
        wanted = sorted({c for s in scenarios for c in s.categories})
        raise DataError(f"{data_dir}: no crops in the categories {wanted} (first folder of each labels.tsv path)")
    return {
        "data": str(data_dir),
        "model": model,
        "threads": threads,
        "repeats": repeats,
        "environment": environment(),
        "scenarios": results,
    }


def _pair(free: dict, formats: dict, key: str, digits: int) -> str:
    return f"{100 * free[key]:.{digits}f} → {100 * formats[key]:.{digits}f}"


def markdown(result: dict) -> str:
    env = result["environment"]
    header = [
        "scenario",
        "category (scoring)",
        "n",
        "char acc % free → formats",
        "exact % free → formats",
        "no valid read",
        "wrong accepted free → formats",
        "decode ms p50 free / formats",
        "decode ms p95 formats",
    ]
    rows = []
    for scenario in result["scenarios"]:
        for category, r in scenario["rows"].items():
            free, fmt = r["free"], r["formats"]
            rows.append(
                [
                    scenario["name"],
                    f"{category} ({r['scoring']})",
                    str(r["n"]),
                    _pair(free, fmt, "char_accuracy", 1),
                    _pair(free, fmt, "exact_match", 0),
                    str(fmt["no_valid_read"]),
                    f"{free['wrong_accepted']} → {fmt['wrong_accepted']}",
                    f"{free['decode_ms_p50']:.3f} / {fmt['decode_ms_p50']:.3f}",
                    f"{fmt['decode_ms_p95']:.3f}",
                ]
            )
    lines = [
        "# Format-constrained decoding: gain on realdev",
        "",
        f"Model `{result['model']}` on `{result['data']}`, each crop read whole, {result['threads']} ONNX Runtime "
        f"thread(s); {env['cpu']['model']}, {env['date']}. A 'no valid read' is scored as an empty read. "
        "'Wrong accepted': reads marked valid (confidence >= 0.5, and fitting a format when formats are on) "
        "whose text differs from the label.",
        "",
        markdown_table(header, rows),
        "",
        "Formats per scenario:",
        "",
    ]
    for scenario in result["scenarios"]:
        lines.append(f"* {scenario['name']} ({scenario['note']}): " + ", ".join(f"`{f}`" for f in scenario["formats"]))
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out_dir: Path | str) -> dict[str, Path]:
    """Write ``format_gain.json`` and ``format_gain.md`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    return write_json_and_markdown(result, out_dir / FORMAT_GAIN_JSON, out_dir / FORMAT_GAIN_MD, markdown(result))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with labels.tsv (realdev/industrial)")
    parser.add_argument("--model", default="default", help="shipped model name or .onnx path")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (0: all cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed decodes per line (median kept)")
    parser.add_argument("--out", type=Path, required=True, help="folder for format_gain.json and format_gain.md")
    args = parser.parse_args(argv)

    def work() -> tuple[str, dict[str, Path]]:
        result = run_format_gain(args.data, args.model, args.threads, args.repeats)
        return markdown(result), write_outputs(result, args.out)

    return run_command(work)
