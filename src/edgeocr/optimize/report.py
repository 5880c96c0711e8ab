"""The report card of ``edgeocr optimize``: the optimised model beside its unoptimised baseline, one run.

Both models are measured by :func:`edgeocr.bench.harness.run_rec_benchmark` in the same process, one
after the other, with the same thread count and warm-up: character accuracy and exact match on every
eval set (each line read alone, as ``edgeocr eval`` reads), latency p50/p95 per line at batch 1 (the
timed reads of the first eval set, preprocessing and decoding included), size on disk of the model
files (``.onnx``, or ``.xml`` + ``.bin``; sidecars excluded). Throughput at batch 1, 32 and 64 comes from
the harness's throughput pass (lines in file order, chunks of the batch size, each run by the recogniser in
batches of one padded width) repeated in rounds that alternate the two models; the median round is reported and every
round is kept in the JSON (see :func:`edgeocr.optimize.pipeline.measure`).

Headline figures (JSON): ``speedup`` = optimised / baseline throughput at the largest batch (64),
``size_reduction`` = 1 - optimised size / baseline size, ``accuracy_drop_pt`` = baseline minus optimised
character accuracy in percentage points, the worst over the eval sets. Checks:

* the floor (the issue's targets): speedup >= 2, size reduction >= 30 %, relative accuracy drop <= 5 %;
* ours: the floor, and a drop of at most 0.5 points on every eval set;
* the int8-default gate: speedup >= 2, at least 3x smaller, at most 0.5 points on every eval set.

``report.json`` and ``report.md`` are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edgeocr.core.atomic import atomic_write_bytes

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FLOOR = {"speedup": 2.0, "size_reduction": 0.30, "relative_accuracy_drop": 0.05}
OURS_MAX_DROP_PT = 0.5
DEFAULT_GATE = {"speedup": 2.0, "size_ratio": 3.0, "accuracy_drop_pt": 0.5}


def model_figures(records: Sequence[dict], set_names: Sequence[str]) -> dict:
    """One model's figures from its benchmark record on each eval set (the first set carries the speed)."""
    first = records[0]
    return {
        "engine": first.get("version"),
        "size_bytes": first["model_size_bytes"],
        "latency_ms_p50": first["latency_ms_p50"],
        "latency_ms_p95": first["latency_ms_p95"],
        "throughput_ips": first["throughput_ips"],
        "accuracy": {
            name: {"n": r["n"], "char_accuracy": r["char_accuracy"], "exact_match": r["exact_match"]}
            for name, r in zip(set_names, records)
        },
        "resources": first.get("resources"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def headline(baseline: dict, optimized: dict, batch: int) -> dict:
    """speedup, size_reduction, accuracy_drop_pt (and their per-set and relative forms) with the checks."""
    key = str(batch)
    drops = {
        name: round(100 * (baseline["accuracy"][name]["char_accuracy"] - acc["char_accuracy"]), 3)
        for name, acc in optimized["accuracy"].items()
    }
    relative = {
        name: round(drop / (100 * baseline["accuracy"][name]["char_accuracy"]), 5)
        if baseline["accuracy"][name]["char_accuracy"]
        else None
        for name, drop in drops.items()
    }
    speedup = _ratio(optimized["throughput_ips"].get(key), baseline["throughput_ips"].get(key))
    size_ratio = _ratio(baseline["size_bytes"], optimized["size_bytes"])
    figures = {
        "speedup": speedup,
        "speedup_batch": batch,
        "speedup_by_batch": {
            b: _ratio(optimized["throughput_ips"].get(b), rate) for b, rate in baseline["throughput_ips"].items()
        },
        "size_reduction": round(1 - optimized["size_bytes"] / baseline["size_bytes"], 4),
        "size_ratio": size_ratio,
        "accuracy_drop_pt": max(drops.values()),
        "accuracy_drop_pt_per_set": drops,
        "relative_accuracy_drop_per_set": relative,
        "latency_p50_ratio": _ratio(baseline["latency_ms_p50"], optimized["latency_ms_p50"]),
    }
    worst_relative = max((r for r in relative.values() if r is not None), default=None)
    floor = {
        "speedup": _check(speedup, ">=", FLOOR["speedup"]),
        "size_reduction": _check(figures["size_reduction"], ">=", FLOOR["size_reduction"]),
        "relative_accuracy_drop": _check(worst_relative, "<=", FLOOR["relative_accuracy_drop"]),
    }
    ours = {**floor, "accuracy_drop_pt": _check(figures["accuracy_drop_pt"], "<=", OURS_MAX_DROP_PT)}
    gate = {
        "speedup": _check(speedup, ">=", DEFAULT_GATE["speedup"]),
        "size_ratio": _check(size_ratio, ">=", DEFAULT_GATE["size_ratio"]),
        "accuracy_drop_pt": _check(figures["accuracy_drop_pt"], "<=", DEFAULT_GATE["accuracy_drop_pt"]),
    }
    figures["checks"] = {"floor": floor, "ours": ours, "int8_default_gate": gate}
    figures["pass"] = {name: all(c["pass"] for c in checks.values()) for name, checks in figures["checks"].items()}
    figures["verdict"] = verdict(figures)
    return figures


def _check(value: float | None, op: str, target: float) -> dict:
    ok = value is not None and (value >= target if op == ">=" else value <= target)
    return {"value": value, "target": f"{op} {target}", "pass": bool(ok)}


def verdict(figures: dict) -> str:
    """The pass/fail line."""

    def word(name: str) -> str:
        return "PASS" if figures["pass"][name] else "FAIL"

    return (
        f"floor (>= 2x, >= 30 % smaller, <= 5 % relative accuracy drop): {word('floor')}; "
        f"ours (<= 0.5 pt): {word('ours')}; int8-default gate (>= 2x, >= 3x smaller, <= 0.5 pt): "
        f"{word('int8_default_gate')} -- speedup {_fmt(figures['speedup'], 'x')} at batch "
        f"{figures['speedup_batch']}, {_fmt(figures['size_ratio'], 'x')} smaller, "
        f"accuracy drop {figures['accuracy_drop_pt']:+.2f} pt"
    )


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _workers(measure: dict) -> str:
    workers = measure.get("workers", 1)
    return f"{workers} workers sharing the session, " if workers > 1 else ""


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def markdown(card: dict) -> str:
    """The report card as Markdown."""
    lines = [
        f"# Optimisation report: {card['source']['model']} -> {', '.join(card['step_names']) or 'unchanged'} "
        f"({card['output']['engine']})",
        "",
    ]
    if card["status"] != "ok":
        lines += [f"**Refused:** {card['reason']}", "", "Nothing but this report was written.", ""]
        lines += _steps_md(card)
        return "\n".join(lines) + "\n"
    h, base, opt = card["headline"], card["baseline"], card["optimized"]
    lines += [
        f"**{h['verdict']}**",
        "",
        f"Measured in one run on {card['environment']['cpu']['model']}, {card['threads']} thread{'s' if card['threads'] > 1 else ''}, "
        f"{card['environment']['date']}. Baseline: `{card['source']['path']}`; optimised: "
        f"`{card['output']['model']}`. Throughput: median of {card['throughput_measure']['rounds']} "
        f"alternating rounds over {card['throughput_measure']['lines']} lines of "
        f"{_workers(card['throughput_measure'])}"
        f"{card['throughput_measure']['set']} (speedup at batch 64 in each round: "
        f"{', '.join(f'{r:.2f}x' for r in card['throughput_measure']['speedup_per_round_batch64'])}).",
        "",
        "| figure | baseline | optimised | change |",
        "|---|---:|---:|---:|",
        f"| size on disk | {_mb(base['size_bytes'])} | {_mb(opt['size_bytes'])} | "
        f"{-100 * h['size_reduction']:+.1f} % ({_fmt(h['size_ratio'], 'x')} smaller) |",
        f"| latency p50, batch 1 | {base['latency_ms_p50']:.2f} ms | {opt['latency_ms_p50']:.2f} ms | "
        f"{_fmt(h['latency_p50_ratio'], 'x')} faster |",
        f"| latency p95, batch 1 | {base['latency_ms_p95']:.2f} ms | {opt['latency_ms_p95']:.2f} ms | |",
    ]
    for batch, rate in base["throughput_ips"].items():
        lines.append(
            f"| throughput, batch {batch} | {_fmt(rate, ' lines/s', 1)} | "
            f"{_fmt(opt['throughput_ips'].get(batch), ' lines/s', 1)} | "
            f"{_fmt(h['speedup_by_batch'].get(batch), 'x')} |"
        )
    for name, acc in opt["accuracy"].items():
        b = base["accuracy"][name]
        lines.append(
            f"| char accuracy, {name} (n={acc['n']}) | {100 * b['char_accuracy']:.2f} % | "
            f"{100 * acc['char_accuracy']:.2f} % | {-h['accuracy_drop_pt_per_set'][name]:+.2f} pt |"
        )
        lines.append(
            f"| exact match, {name} | {100 * b['exact_match']:.2f} % | {100 * acc['exact_match']:.2f} % | "
            f"{100 * (acc['exact_match'] - b['exact_match']):+.2f} pt |"
        )
    lines += ["", "| check | value | target | result |", "|---|---:|---:|---|"]
    for group, checks in h["checks"].items():
        for name, check in checks.items():
            lines.append(
                f"| {group}: {name} | {_fmt(check['value'], '', 4)} | {check['target']} | "
                f"{'pass' if check['pass'] else 'FAIL'} |"
            )
    lines += [""] + _steps_md(card)
    env = card["environment"]
    flags = ", ".join(f for f, on in env["cpu"]["flags"].items() if on)
    lines += [
        "",
        f"Environment: {env['platform']}, Python {env['python']}, CPU flags {flags}; "
        f"libraries {', '.join(f'{k} {v}' for k, v in env['libraries'].items())}.",
    ]
    return "\n".join(lines) + "\n"


def _steps_md(card: dict) -> list[str]:
    lines = ["## Steps", ""]
    for index, step in enumerate(card["steps"], start=1):
        settings = ", ".join(f"{k}={v}" for k, v in step.get("settings", {}).items())
        lines.append(
            f"{index}. **{step['name']}** -> `{step.get('model', '-')}` ({settings}; {step.get('seconds', 0):.1f} s)"
        )
        for attempt in step.get("gate", []):
            drops = ", ".join(f"{k} {v:+.2f} pt" for k, v in attempt["drop_pt"].items())
            lines.append(
                f"   - gate: {len(attempt['kept_float'])} layer(s) kept in float -> drop {drops}"
                f"{' (accepted)' if attempt.get('accepted') else ''}"
            )
        for key, value in step.get("stats", {}).items():
            lines.append(f"   - {key}: {value}")
    return lines


def write_card(card: dict, folder: Path) -> dict[str, Path]:
    """``report.json`` and ``report.md`` in ``folder``, each written atomically."""
    paths = {"json": folder / REPORT_JSON, "markdown": folder / REPORT_MD}
    atomic_write_bytes(paths["json"], (json.dumps(card, indent=1, ensure_ascii=False, default=str) + "\n").encode())
    atomic_write_bytes(paths["markdown"], markdown(card).encode("utf-8"))
    return paths
