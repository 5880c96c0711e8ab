"""The benchmark's outputs: ``results.json``, ``results.md`` and ``report.html`` with its plots.

The same layout serves both modes; ``--mode e2e`` (whole images) adds detection precision /
recall / hmean at IoU 0.5 to the tables, times per image instead of per crop, counts every
weight file of a pipeline in its size, and leaves out the throughput plot (whole images are read
one at a time, so there is one batch size).

``results.json`` is everything (settings, environment, every engine's figures and predictions).
``results.md`` has two tables: one line per engine overall, and one per category with strict /
relaxed character accuracy and relaxed exact match per engine, laid out as ``realdev/PEERS.md``.
``report.html`` is self-contained: the same tables and the plots, embedded as PNG data; the PNGs are
also written under ``plots/``:

* ``accuracy_vs_latency.png``: character accuracy against p50 latency, Pareto front marked
  (no other engine is both faster and more accurate than an engine on it);
* ``throughput_vs_batch.png``: images/s against batch size;
* ``size_vs_accuracy.png``: model size on disk against character accuracy;
* ``per_category.png``: strict and relaxed character accuracy per category and engine.

Plots use matplotlib's object API on the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def check_report_dependencies() -> None:
    """Fail before any work when the plotting / sampling libraries of the ``bench`` extra are missing."""
    missing = []
    for module, requirement in (("matplotlib", "matplotlib>=3.8"), ("psutil", "psutil>=5.9")):
        try:
            __import__(module)
        except ImportError:
            missing.append(requirement)
    if missing:
        raise EdgeOCRError(f"the benchmark report needs {', '.join(missing)}: pip install 'edgeocr[bench]'")


def _ok(result: dict) -> list[dict]:
    return [e for e in result["engines"] if e["status"] == "ok"]


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _triple(scores: dict) -> str:
    """strict / relaxed / exact(relaxed), as realdev/PEERS.md writes them."""
    return (
        f"{_pct(scores['char_accuracy'])} / {_pct(scores['char_accuracy_relaxed'])} / "
        f"{_pct(scores['exact_match_relaxed'], 0)}"
    )


def _e2e(result: dict) -> bool:
    return result.get("mode") == "e2e"


def _detection(scores: dict) -> str:
    """precision / recall / hmean, in %."""
    return f"{_pct(scores['precision'])} / {_pct(scores['recall'])} / {_pct(scores['hmean'])}"


def _gpu(res: dict) -> str:
    gpu = res.get("gpu") or {}
    if not gpu.get("available"):
        return "-"
    return f"{_num(gpu.get('util_percent_mean'), 0)} % / {_num(gpu.get('memory_used_mb_peak'), 0)} MB"


def overall_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    batches = result["batches"]
    e2e = _e2e(result)
    with_gpu = any(_gpu(e["resources"]) != "-" for e in _ok(result))
    header = [
        "engine",
        "version",
        "threads",
        "models MB" if e2e else "model MB",
        "load s",
        "strict / relaxed / exact(relaxed) %",
        "exact strict %",
    ]
    header += ["det P / R / H %"] if e2e else []
    header += [
        "p50 / p95 / p99 ms" + (" per image" if e2e else ""),
        "images/s @ batch " + " / ".join(str(b) for b in batches),
        "peak RSS MB (+added)",
        "CPU %",
    ]
    header += ["GPU util / memory"] if with_gpu else []
    rows = []
    for e in result["engines"]:
        if e["status"] != "ok":
            rows.append([e["name"], f"{e['status']}: {e.get('reason', '')}"] + ["-"] * (len(header) - 2))
            continue
        rates = " / ".join(_num(e["throughput_ips"].get(str(b)), 1) for b in batches)
        res = e["resources"]
        row = [
            e["name"],
            e["version"],
            str(e["threads"]),
            _num(e["model_size_bytes"] / 2**20),
            _num(e["load_s"]),
            _triple(e),
            _pct(e["exact_match"], 0),
        ]
        row += [_detection(e)] if e2e else []
        row += [
            f"{_num(e['latency_ms_p50'])} / {_num(e['latency_ms_p95'])} / {_num(e['latency_ms_p99'])}",
            rates,
            f"{_num(res['rss_peak_mb'], 0)} (+{_num(res['rss_added_mb'], 0)})",
            _num(res["cpu_percent_mean"], 0),
        ]
        row += [_gpu(res)] if with_gpu else []
        rows.append(row)
    return header, rows


def category_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    engines = _ok(result)
    e2e = _e2e(result)
    cell = (lambda s: f"{_triple(s)} · H {_pct(s['hmean'])}") if e2e else _triple
    suffix = " strict / relaxed / exact(relaxed) · det hmean" if e2e else " strict / relaxed / exact(relaxed)"
    header = ["category", "lines" if e2e else "n"] + [e["name"] + suffix for e in engines]
    rows = []
    for category, n in result["categories"].items():
        rows.append([category or "(top level)", str(n)] + [cell(e["per_category"][category]) for e in engines])
    rows.append(["ALL", str(result["n"])] + [cell(e) for e in engines])
    return header, rows


def orientation_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """e2e: horizontal and vertical (stacked) lines apart: strict / relaxed / exact(relaxed) and recall."""
    engines = _ok(result)
    header = ["lines", "n"] + [f"{e['name']} strict / relaxed / exact(relaxed) · recall" for e in engines]
    rows = []
    for orientation in ("horizontal", "vertical"):
        scores = [e.get("per_orientation", {}).get(orientation) for e in engines]
        n = next((s["n"] for s in scores if s), None)
        if n is not None:
            rows.append([orientation, str(n)] + [f"{_triple(s)} · {_pct(s['recall'])}" if s else "-" for s in scores])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    escape = lambda cell: cell.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def _settings_line(result: dict) -> str:
    env = result["environment"]
    cpu = env["cpu"]
    flags = ", ".join(f for f, present in cpu["flags"].items() if present) or "none of note"
    commit = (env["git"].get("commit") or "unknown")[:12] + (" (modified)" if env["git"].get("dirty") else "")
    if _e2e(result):
        what = (
            f"{result['n']} labelled lines in {result['images']} whole images from `{result['data']}`, each "
            f"engine's full pipeline (detection + recognition), matched at IoU {result['iou']}, "
            f"{result['threads']} threads (Tesseract 1), one image at a time"
        )
    else:
        what = (
            f"{result['n']} crops from `{result['data']}`, recognition only (each crop given whole), "
            f"{result['threads']} threads (Tesseract 1), batch sizes {', '.join(map(str, result['batches']))}"
        )
    return (
        f"{what}, {result['warmup']} warm-up reads. {cpu['model']}, {cpu['usable_cores']} usable cores ({flags}); "
        f"load average {env.get('load_average')}; {env['date']}; edgeocr commit {commit}."
    )


def _title(result: dict) -> str:
    return "End-to-end benchmark (whole images)" if _e2e(result) else "Recognition benchmark"


E2E_NOTE = (
    "Whole images: each labelled line is scored against the read matched to it (IoU >= 0.5, one to one); "
    "a missed line counts as read empty. Detection P / R / H: precision, recall and their harmonic mean; "
    "reads matching no label are false positives only on images labelled exhaustively; ignored lines count "
    "neither way; the pieces of a vertical (stacked) line are joined when no single read matches it. "
    "Latency is one engine call per whole image, after warm-up."
)


def markdown(result: dict) -> str:
    """The two tables (overall, per category), with the settings and the engines not installed."""
    parts = [
        f"# {_title(result)}",
        "",
        _settings_line(result),
        "",
        "Character accuracy = 1 - edit distance / ground-truth characters over all lines; strict keeps the "
        "text as it is, relaxed upper-cases and keeps only A-Z and 0-9; exact = share of lines read exactly. "
        + (E2E_NOTE if _e2e(result) else "Latency is one engine call per crop, after warm-up.")
        + " Peers' texts are normalised to one line (whitespace runs to one space); ours are scored as they come.",
        "",
        "## Overall",
        "",
        markdown_table(*overall_rows(result)),
        "",
        "## Per category",
        "",
        markdown_table(*category_rows(result)),
        "",
    ]
    if _e2e(result) and orientation_rows(result)[1]:
        parts += ["## Per orientation", "", markdown_table(*orientation_rows(result)), ""]
    missing = [e for e in result["engines"] if e["status"] != "ok"]
    if missing:
        parts += ["## Not measured", ""] + [f"- {e['name']}: {e['status']} ({e.get('reason', '')})" for e in missing]
        parts.append("")
    return "\n".join(parts)


# --- plots -------------------------------------------------------------------------------------


def _figure(width: float = 7.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, latency, accuracy) points that no other point beats on both (lower latency, higher accuracy)."""
    front, best = [], float("-inf")
    for name, _, accuracy in sorted(points, key=lambda p: (p[1], -p[2])):
        if accuracy > best:
            front.append(name)
            best = accuracy
    return front


def _log_x_if_positive(ax, values: list[float]) -> None:
    """Log x axis when the values allow it (an instant fake engine may time at 0.000 ms)."""
    if values and min(values) > 0:
        ax.set_xscale("log")


def plot_accuracy_vs_latency(result: dict) -> bytes:
    engines = [e for e in _ok(result) if e["latency_ms_p50"] is not None]
    figure = _figure()
    ax = figure.add_subplot()
    points = [(e["name"], e["latency_ms_p50"], 100 * e["char_accuracy"]) for e in engines]
    front = pareto_front(points)
    for e in engines:
        on_front = e["name"] in front
        ax.scatter(
            e["latency_ms_p50"],
            100 * e["char_accuracy"],
            s=70,
            marker="o" if on_front else "x",
            color="tab:red" if on_front else "tab:gray",
            zorder=3,
        )
        ax.scatter(
            e["latency_ms_p50"],
            100 * e["char_accuracy_relaxed"],
            s=30,
            marker="^",
            color="tab:blue",
            alpha=0.6,
            zorder=2,
        )
        ax.annotate(
            e["name"],
            (e["latency_ms_p50"], 100 * e["char_accuracy"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    front_points = sorted((p for p in points if p[0] in front), key=lambda p: p[1])
    if front_points:
        ax.step(
            [p[1] for p in front_points],
            [p[2] for p in front_points],
            where="post",
            color="tab:red",
            linewidth=1,
            label="Pareto front (strict)",
        )
    ax.scatter([], [], marker="^", color="tab:blue", label="relaxed")
    _log_x_if_positive(ax, [p[1] for p in points])
    ax.set_xlabel("p50 latency per " + ("image" if _e2e(result) else "crop") + ", ms")
    ax.set_ylabel("character accuracy, %")
    ax.set_title("Accuracy vs latency (batch 1)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(figure)


def plot_throughput(result: dict) -> bytes:
    figure = _figure()
    ax = figure.add_subplot()
    for e in _ok(result):
        sizes = [int(b) for b, rate in e["throughput_ips"].items() if rate is not None]
        rates = [e["throughput_ips"][str(b)] for b in sizes]
        ax.plot(sizes, rates, marker="o", label=e["name"] + ("" if e["batches"] else " (no batching)"))
    ax.set_xscale("log", base=2)
    ax.set_xticks(result["batches"], [str(b) for b in result["batches"]])
    rates = [r for e in _ok(result) for r in e["throughput_ips"].values() if r is not None]
    if rates and min(rates) > 0:
        ax.set_yscale("log")  # engines differ by orders of magnitude
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (log)" if ax.get_yscale() == "log" else "images / s")
    ax.set_title(f"Throughput ({result['threads']} threads)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)


def plot_size_vs_accuracy(result: dict) -> bytes:
    figure = _figure()
    ax = figure.add_subplot()
    for e in _ok(result):
        size = max(e["model_size_bytes"], 1) / 2**20
        ax.scatter(size, 100 * e["char_accuracy"], s=60, zorder=3)
        ax.annotate(e["name"], (size, 100 * e["char_accuracy"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    _log_x_if_positive(ax, [max(e["model_size_bytes"], 1) / 2**20 for e in _ok(result)])
    ax.set_xlabel("all models of the pipeline on disk, MB" if _e2e(result) else "recognition model on disk, MB")
    ax.set_ylabel("character accuracy (strict), %")
    ax.set_title("Model size vs accuracy")
    ax.grid(True, alpha=0.3)
    return _png(figure)


def plot_per_category(result: dict) -> bytes:
    import numpy as np

    engines = _ok(result)
    categories = list(result["categories"])
    figure = _figure(max(7.0, 1.2 * len(categories) + 3), 6.5)
    axes = figure.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(engines), 1)
    x = np.arange(len(categories))
    for ax, key, title in ((axes[0], "char_accuracy", "strict"), (axes[1], "char_accuracy_relaxed", "relaxed")):
        for i, e in enumerate(engines):
            values = [100 * e["per_category"][c][key] for c in categories]
            ax.bar(x + (i - (len(engines) - 1) / 2) * width, values, width, label=e["name"])
        ax.set_ylabel(f"{title} char accuracy, %")
        ax.set_ylim(0, 100)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_xticks(x, [c or "(top level)" for c in categories], rotation=20, ha="right")
    figure.legend(
        *axes[0].get_legend_handles_labels(), fontsize=8, ncols=min(len(engines), 5), loc="outside upper center"
    )
    figure.suptitle("Character accuracy per category", y=0.0, va="bottom", fontsize=10)
    return _png(figure)


PLOTS = {
    "accuracy_vs_latency.png": plot_accuracy_vs_latency,
    "throughput_vs_batch.png": plot_throughput,
    "size_vs_accuracy.png": plot_size_vs_accuracy,
    "per_category.png": plot_per_category,
}


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plots_for(result: dict) -> dict:
    """The plots that mean something for this result (e2e has one batch size: no throughput plot)."""
    return {name: draw for name, draw in PLOTS.items() if not (_e2e(result) and name == "throughput_vs_batch.png")}


def report_html(result: dict, plots: dict[str, bytes]) -> str:
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in plots.items()
    )
    missing = "".join(
        f"<li>{html.escape(e['name'])}: {html.escape(e['status'])} ({html.escape(e.get('reason', ''))})</li>"
        for e in result["engines"]
        if e["status"] != "ok"
    )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child"
        "{text-align:left}figure{display:inline-block;margin:1em}img{max-width:640px}"
    )
    orientation = orientation_rows(result) if _e2e(result) else ([], [])
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgeocr {html.escape(_title(result))}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(_title(result))}</h1>"
        f"<p>{html.escape(_settings_line(result))}</p>"
        + (f"<p>{html.escape(E2E_NOTE)}</p>" if _e2e(result) else "")
        + f"<h2>Overall</h2>{_html_table(*overall_rows(result))}"
        f"<h2>Per category</h2>{_html_table(*category_rows(result))}"
        + (f"<h2>Per orientation</h2>{_html_table(*orientation)}" if orientation[1] else "")
        + (f"<h2>Not measured</h2><ul>{missing}</ul>" if missing else "")
        + f"<h2>Plots</h2>{images}</body></html>\n"
    )


def write_report(result: dict, out_dir: Path | str) -> dict[str, Path]:
    """Write results.json, results.md, plots/*.png and report.html into ``out_dir``; returns their paths."""
    check_report_dependencies()
    out_dir = Path(out_dir)
    plots = {name: draw(result) for name, draw in plots_for(result).items()}
    paths = {"json": out_dir / RESULTS_JSON, "markdown": out_dir / RESULTS_MD, "html": out_dir / REPORT_HTML}
    atomic_write_bytes(paths["json"], (json.dumps(result, indent=1, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(paths["markdown"], markdown(result).encode())
    for name, data in plots.items():
        paths[name] = out_dir / PLOTS_DIR / name
        atomic_write_bytes(paths[name], data)
    atomic_write_bytes(paths["html"], report_html(result, plots).encode())
    return paths
