"""The ``edgeocr`` command line.

Each command imports its heavy machinery inside its body, so ``edgeocr --help`` and the reading
commands stay light, and a missing extra becomes a one-line message instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgeocr import __version__
from edgeocr.core.errors import EdgeOCRError, Interrupted

app = typer.Typer(name="edgeocr", help="Read printed industrial codes in real time.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
synth_app = typer.Typer(help="Generate synthetic industrial-code data.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")


class DatasetFormat(str, Enum):
    folder = "folder"
    lmdb = "lmdb"


def _need(extra: str, module: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise EdgeOCRError(f"this command needs the '{extra}' extra: pip install 'edgeocr[{extra}]' ({exc})") from exc


def _synth(kind: str, count: int, seed: int, workers: int, out: Path, fmt: DatasetFormat, preview: Optional[Path],
           templates: list[Path], no_default_templates: bool, fonts: list[Path], overwrite: bool, quiet: bool) -> None:
    _need("synth", "albumentations")
    from edgeocr.synth.dataset import SynthJob, synthesize

    job = SynthJob(kind=kind, count=count, seed=seed, out=out, workers=workers, format=fmt.value, preview=preview,
                   template_files=tuple(str(t) for t in templates), include_default_templates=not no_default_templates,
                   font_dirs=tuple(str(f) for f in fonts), overwrite=overwrite)
    result = synthesize(job, progress=not quiet)
    noun = "line crops" if kind == "lines" else "scenes"
    typer.echo(f"wrote {result.count} {noun} to {result.out} in {result.seconds:.1f} s "
               f"({result.rate:.0f} {noun}/s with {workers} worker{'s' if workers > 1 else ''})")
    if result.preview:
        typer.echo(f"preview: {result.preview}")


_COUNT = typer.Option(1000, "--count", "-n", help="Number of samples.")
_SEED = typer.Option(0, "--seed", help="Same seed, same dataset, byte for byte.")
_WORKERS = typer.Option(os.cpu_count() or 1, "--workers", "-w", help="Worker processes.")
_OUT = typer.Option(..., "--out", "-o", help="Output directory (must not exist, or pass --overwrite).")
_FORMAT = typer.Option(DatasetFormat.folder, "--format", help="folder (images + labels) or lmdb.")
_PREVIEW = typer.Option(None, "--preview", help="Also write a contact sheet (PNG) of the first samples.")
_TEMPLATES = typer.Option([], "--templates", help="Extra YAML catalogue of code templates (repeatable).")
_NO_DEFAULT = typer.Option(False, "--no-default-templates", help="Use only the --templates files.")
_FONTS = typer.Option([], "--fonts", help="Extra font directory (repeatable).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output directory.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def _register_synth(kind: str, help_text: str) -> None:
    """``edgeocr synth lines`` and ``edgeocr synth scenes`` take the same options."""

    def command(count: int = _COUNT, seed: int = _SEED, workers: int = _WORKERS, out: Path = _OUT,
                format: DatasetFormat = _FORMAT, preview: Optional[Path] = _PREVIEW,
                templates: list[Path] = _TEMPLATES, no_default_templates: bool = _NO_DEFAULT,
                fonts: list[Path] = _FONTS, overwrite: bool = _OVERWRITE, quiet: bool = _QUIET) -> None:
        _synth(kind, count, seed, workers, out, format, preview, templates, no_default_templates, fonts,
               overwrite, quiet)

    synth_app.command(kind, help=help_text)(command)


_register_synth("lines", "Line crops of printed codes, labelled in labels.tsv (relative/path<TAB>text).")
_register_synth("scenes", "Whole product scenes with several code blocks, one polygon per line in annotations.jsonl.")


@app.command("train")
def train(
    arch: str = typer.Option("crnn_m", "--arch", help="Architecture: crnn_s, crnn_m, crnn_l, svtr_s (tiny ones for tests)."),
    data: list[Path] = typer.Option([], "--data", help="labels.tsv folder or LMDB directory (repeatable)."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation set; default: held-out synthetic lines."),
    synthetic: int = typer.Option(20000, "--synthetic", help="Synthetic lines rendered on the fly per epoch (0: none)."),
    synthetic_ratio: Optional[float] = typer.Option(None, "--synthetic-ratio",
                                                    help="Share of synthetic lines when mixing with --data."),
    epochs: int = typer.Option(20, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    warmup: float = typer.Option(0.05, "--warmup", help="Share of the planned steps spent warming up the LR."),
    width_chunks: int = typer.Option(4, "--width-chunks",
                                     help="Run each batch in this many width-sorted chunks (less padding)."),
    workers: int = typer.Option(2, "--workers", help="Data loader processes."),
    precision: str = typer.Option("auto", "--precision", help="auto, 32, bf16-mixed or 16-mixed."),
    accelerator: str = typer.Option("auto", "--accelerator", help="auto, cpu or gpu."),
    devices: str = typer.Option("auto", "--devices", help="Devices per node (Lightning's meaning)."),
    num_nodes: int = typer.Option(1, "--num-nodes"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Save last.ckpt every N steps."),
    patience: int = typer.Option(5, "--patience", help="Early stopping: epochs without improvement."),
    templates: list[Path] = _TEMPLATES,
    fonts: list[Path] = _FONTS,
    seed: int = _SEED,
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, metrics, model.onnx."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from these weights (model.pt or .ckpt)."),
    quiet: bool = _QUIET,
) -> None:
    """Train a recogniser on synthetic lines and/or datasets; exports OUT/model.onnx with its sidecar."""
    from edgeocr.train.command import train_command

    model = train_command(arch=arch, data=data, val=val, synthetic=synthetic, synthetic_ratio=synthetic_ratio,
                          epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, workers=workers,
                          precision=precision, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                          checkpoint_every_n_steps=checkpoint_every, early_stopping_patience=patience,
                          templates=templates, fonts=fonts, seed=seed, out=out, resume=resume, progress=not quiet,
                          warmup_fraction=warmup, width_chunks=width_chunks, init=init)
    typer.echo(f"model: {model}")


@app.command("train-detector")
def train_detector(
    arch: str = typer.Option("db_s", "--arch", help="db_s (ships) or db_tiny (tests)."),
    scenes: int = typer.Option(8000, "--scenes", help="Synthetic scenes rendered on the fly per epoch."),
    data: list[Path] = typer.Option([], "--data", help="Scene folders with annotations.jsonl (repeatable)."),
    val_scenes: int = typer.Option(300, "--val-scenes", help="Held-out synthetic validation scenes."),
    input_size: int = typer.Option(640, "--input-size", help="Training crop side in pixels (multiple of 32)."),
    shrink_ratio: float = typer.Option(0.4, "--shrink-ratio", help="DB shrink ratio of the targets."),
    epochs: int = typer.Option(60, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    workers: int = typer.Option(4, "--workers"),
    accelerator: str = typer.Option("auto", "--accelerator"),
    precision: str = typer.Option("auto", "--precision"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every"),
    seed: int = _SEED,
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, metrics, model.onnx."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt."),
    quiet: bool = _QUIET,
) -> None:
    """Train the DB text-line detector on synthetic scenes (and/or annotated folders); exports OUT/model.onnx."""
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from pydantic import ValidationError

    from edgeocr.train.detector_trainer import DetectorTrainConfig, run_detector_training

    try:
        cfg = DetectorTrainConfig(
            arch=arch, scenes_per_epoch=scenes, data=tuple(data), val_scenes=val_scenes, input_size=input_size,
            shrink_ratio=shrink_ratio, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
            workers=workers, accelerator=accelerator, precision=precision, checkpoint_every_n_steps=checkpoint_every,
            seed=seed, synthetic_seed=seed, out=out, resume=resume, progress_bar=not quiet)
    except ValidationError as exc:
        raise EdgeOCRError(f"invalid detector training settings: {exc.errors()[0]['loc']}: "
                           f"{exc.errors()[0]['msg']}") from None
    typer.echo(f"model: {run_detector_training(cfg)}")


@app.command("export")
def export(
    weights: Path = typer.Option(..., "--weights", help="A training checkpoint (.ckpt) or a model.pt."),
    out: Path = typer.Option(..., "--out", "-o", help="The .onnx to write; its sidecar and .pt go beside it."),
) -> None:
    """Export a checkpoint (for example best.ckpt of a run still training) to ONNX with its sidecar."""
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from edgeocr.models.export import export_weights_file

    typer.echo(f"model: {export_weights_file(weights, out)}")


@app.command("finetune")
def finetune(
    init: str = typer.Option("default", "--init", help="Start from: a shipped model name, an .onnx with its "
                             "model.pt beside it, a model.pt, or a training checkpoint (.ckpt)."),
    data: Path = typer.Option(..., "--data", help="Your labelled crops: folder with labels.tsv."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: split, checkpoints, model.onnx, report."),
    synthetic_ratio: float = typer.Option(0.5, "--synthetic-ratio", help="Share of synthetic lines in training "
                                          "(0: your crops only)."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of your crops held out for the before/after report."),
    steps: int = typer.Option(1000, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(3e-4, "--lr", help="Peak learning rate (lower than training from scratch)."),
    workers: int = typer.Option(1, "--workers", help="Data loader processes."),
    accelerator: str = typer.Option("auto", "--accelerator", help="auto, cpu or gpu."),
    precision: str = typer.Option("auto", "--precision", help="auto, 32, bf16-mixed or 16-mixed."),
    templates: list[Path] = _TEMPLATES,
    fonts: list[Path] = _FONTS,
    seed: int = _SEED,
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads for the before/after scoring."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt."),
    quiet: bool = _QUIET,
) -> None:
    """Fine-tune a model on your own crops mixed with synthetic lines; reports before/after on a held-out share."""
    from edgeocr.train.finetune import REPORT_MD, finetune_command

    report = finetune_command(init=init, data=data, out=out, synthetic_ratio=synthetic_ratio, holdout=holdout,
                              steps=steps, batch_size=batch_size, lr=lr, workers=workers, seed=seed,
                              accelerator=accelerator, precision=precision, templates=templates, fonts=fonts,
                              threads=threads, resume=resume, progress=not quiet)
    before, after = report["before"], report["after"]
    typer.echo(f"held-out {after['n']} crops: char accuracy {100 * before['char_accuracy']:.1f}% -> "
               f"{100 * after['char_accuracy']:.1f}%, exact {100 * before['exact_match']:.1f}% -> "
               f"{100 * after['exact_match']:.1f}%")
    typer.echo(f"model: {report['model']}\nreport: {out / REPORT_MD}")


class ReadMode(str, Enum):
    whole = "whole"
    roi = "roi"
    detector = "detector"


def _build_reader(model: str, mode: ReadMode, detector: Optional[str], regions: Optional[Path],
                  formats: list[str], min_confidence: float, threads: int):
    import yaml

    from edgeocr.runtime.reader import Reader, ReaderConfig, Region
    from edgeocr.runtime.recognizer import EngineConfig

    region_list: tuple = ()
    if regions is not None:
        try:
            raw = yaml.safe_load(regions.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise EdgeOCRError(f"{regions}: cannot read the regions file ({exc})") from exc
        raw = raw.get("regions", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, list):
            raise EdgeOCRError(f"{regions}: expected a list of regions (name, rect or quad, units, format)")
        region_list = tuple(Region(**item) for item in raw)
    engine = EngineConfig(intra_op_threads=threads)
    config = ReaderConfig(model=model, engine=engine, mode=mode.value, regions=region_list, formats=tuple(formats),
                          min_confidence=min_confidence)
    line_detector = None
    if mode is ReadMode.detector:
        if detector in (None, "rapidocr"):
            from edgeocr.runtime.rapidocr_detector import RapidOCRDetector, RapidOCRDetectorConfig

            line_detector = RapidOCRDetector(RapidOCRDetectorConfig(intra_op_threads=threads))
        else:
            from edgeocr.runtime.detector import OnnxDetector

            line_detector = OnnxDetector(detector, engine)
    return Reader(config, detector=line_detector)


def _read_rows(reader, paths: list[str], batch: int, every: int, draw: Optional[Path], quiet: bool):
    """Yield (source name, reads or error message) for every image and sampled video frame."""
    from rich.progress import Progress

    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.core.images import load_image
    from edgeocr.runtime.annotate import draw_reads
    from edgeocr.runtime.sources import expand_inputs, video_frames

    items = expand_inputs(paths)  # every argument checked before any reading

    def frames():
        for item in items:
            if item.is_video:
                try:
                    for index, frame in video_frames(item.path, every):
                        yield f"{item.path}#frame={index}", frame
                except EdgeOCRError as exc:
                    yield str(item.path), exc
            else:
                try:
                    yield str(item.path), load_image(item.path)
                except EdgeOCRError as exc:
                    yield str(item.path), exc

    def flush(pending):
        images = [image for _, image in pending]
        try:
            results = reader.read_batch(images)
        except EdgeOCRError:  # one bad image must not cost the others their reads
            results = []
            for image in images:
                try:
                    results.append(reader.read(image))
                except EdgeOCRError as exc:
                    results.append(exc)
        for (name, image), reads in zip(pending, results):
            if draw is not None and not isinstance(reads, Exception):
                ok, encoded = cv2.imencode(".jpg", draw_reads(image, reads))
                if ok:
                    atomic_write_bytes(draw / (name.replace("/", "_").replace("#", "_") + ".jpg"), encoded.tobytes())
            yield name, reads

    import cv2

    with Progress(disable=quiet or len(items) < 2, transient=True) as progress:
        task = progress.add_task("reading", total=len(items))
        pending: list = []
        for name, image in frames():
            if isinstance(image, Exception):
                if pending:  # keep the input order
                    yield from flush(pending)
                    pending = []
                yield name, image
                progress.advance(task)
                continue
            pending.append((name, image))
            if "#frame=" not in name:
                progress.advance(task)
            if len(pending) >= batch:
                yield from flush(pending)
                pending = []
        if pending:
            yield from flush(pending)


@app.command("read")
def read(
    paths: list[str] = typer.Argument(..., help="Image or video files, folders, glob patterns."),
    model: str = typer.Option("default", "--model", help="Shipped recogniser name or .onnx path."),
    mode: ReadMode = typer.Option(ReadMode.whole, "--mode", help="whole: each image is one line crop; roi: fixed "
                                  "regions (--regions); detector: find the lines (--detector)."),
    detector: Optional[str] = typer.Option(None, "--detector", help="Detector .onnx, or 'rapidocr' (PP-OCR's)."),
    regions: Optional[Path] = typer.Option(None, "--regions", help="YAML list of regions for --mode roi."),
    formats: list[str] = typer.Option([], "--format", help="Expected format, e.g. 'LOT [A-Z0-9]{7}', "
                                      "'EXP {MM}/{YYYY}', iso6346 (repeatable)."),
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Reads below this are marked invalid."),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads (0: all cores)."),
    batch: int = typer.Option(8, "--batch", help="Images read together (their lines share batches)."),
    every: int = typer.Option(1, "--every", help="Videos: read every N-th frame."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every read with its polygon here."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write one row per line here."),
    draw: Optional[Path] = typer.Option(None, "--draw", help="Write images with boxes and reads to this folder."),
    quiet: bool = _QUIET,
) -> None:
    """Read the codes on images, folders, globs and videos; print a table, or write JSON/CSV."""
    import csv
    import io
    import json

    from edgeocr.core.atomic import atomic_write_bytes

    if batch < 1 or every < 1:
        raise EdgeOCRError("--batch and --every must be at least 1")
    reader = _build_reader(model, mode, detector, regions, formats, min_confidence, threads)
    if draw is not None:
        draw.mkdir(parents=True, exist_ok=True)
    results, failures = [], 0
    for name, reads in _read_rows(reader, paths, batch, every, draw, quiet):
        if isinstance(reads, Exception):
            failures += 1
            results.append({"source": name, "error": str(reads), "lines": []})
        else:
            results.append({"source": name, "lines": [r.to_dict() for r in reads]})
    if json_out is not None:
        atomic_write_bytes(json_out, (json.dumps({"model": model, "mode": mode.value, "results": results},
                                                 indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    if csv_out is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["source", "line", "text", "confidence", "format", "valid", "raw_text", "poly", "error"])
        for result in results:
            for i, line in enumerate(result["lines"]):
                writer.writerow([result["source"], i, line["text"], f"{line['confidence']:.4f}", line["format"] or "",
                                 line["valid"], line["raw_text"], json.dumps(line["poly"]), ""])
            if "error" in result:
                writer.writerow([result["source"], "", "", "", "", False, "", "", result["error"]])
        atomic_write_bytes(csv_out, buffer.getvalue().encode("utf-8"))
    if not quiet:
        _print_reads(results)
    if failures:
        typer.echo(f"{failures} input(s) could not be read", err=True)
        raise typer.Exit(1)


def _print_reads(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("source", "text", "conf", "format", "valid"):
        table.add_column(column, overflow="fold")
    for result in results:
        if "error" in result:
            table.add_row(result["source"], f"[red]{result['error']}[/red]", "", "", "")
        for line in result["lines"]:
            text = line["text"] if line["text"] else f"[dim](raw: {line['raw_text']})[/dim]"
            table.add_row(result["source"], text, f"{line['confidence']:.2f}", line["format"] or "",
                          "yes" if line["valid"] else "[red]no[/red]")
    Console().print(table)


class EvalMode(str, Enum):
    rec = "rec"
    e2e = "e2e"


@app.command("eval")
def evaluate(
    data: Path = typer.Option(..., "--data", help="Folder with images and labels.tsv (relative/path<TAB>text)."),
    model: str = typer.Option("default", "--model", help="Shipped model name or path of an .onnx file."),
    mode: EvalMode = typer.Option(EvalMode.rec, "--mode", help="rec: one crop per label."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure and prediction here."),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads (0: all cores)."),
    quiet: bool = _QUIET,
) -> None:
    """Score a recogniser: character accuracy, exact match (strict and relaxed), latency, per category."""
    import json

    _need("bench", "rapidfuzz")
    from edgeocr.bench.evaluate import evaluate_rec
    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.runtime.models import resolve_model
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

    if mode is not EvalMode.rec:
        raise EdgeOCRError("--mode e2e needs the reader (detector + recogniser), which is not built yet")
    recognizer = OnnxRecognizer(resolve_model(model), EngineConfig(intra_op_threads=threads))

    def read(image):
        line = recognizer.recognize([image])[0]
        return line.text, line.confidence

    result = {"mode": mode.value, "model": model, "data": str(data), **evaluate_rec(read, data)}
    if json_out is not None:
        atomic_write_bytes(json_out, (json.dumps(result, indent=1, ensure_ascii=False) + "\n").encode())
    if not quiet:
        _print_scores(result)


def _print_scores(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} on {result['data']}")
    for column in ("category", "n", "char acc %", "exact %", "relaxed char %", "relaxed exact %", "p50 ms"):
        table.add_column(column, justify="right" if column != "category" else "left")
    rows = [*result["per_category"].items(), ("ALL", result)]
    for name, r in rows:
        table.add_row(name or "-", str(r["n"]), f"{100 * r['char_accuracy']:.1f}", f"{100 * r['exact_match']:.1f}",
                      f"{100 * r['char_accuracy_relaxed']:.1f}", f"{100 * r['exact_match_relaxed']:.1f}",
                      f"{r['latency_ms_p50']:.2f}")
    Console().print(table)


@app.command("bench")
def bench(
    data: Path = typer.Option(..., "--data", help="Folder with images and labels.tsv."),
    mode: EvalMode = typer.Option(EvalMode.rec, "--mode", help="rec: one crop per label."),
    models: list[str] = typer.Option([], "--models", help="Our models: shipped names or .onnx paths (repeatable "
                                     "or comma-separated)."),
    peers: list[str] = typer.Option([], "--peers", help="easyocr, ppocrv4, ppocrv6, tesseract (make peers)."),
    threads: int = typer.Option(2, "--threads", help="Threads for every engine (recorded)."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes for throughput, e.g. 1,8,64."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: results.json, results.md, report.html."),
    quiet: bool = _QUIET,
) -> None:
    """Benchmark our models and the peers: accuracy, latency, throughput, size, memory, CPU."""
    _need("bench", "matplotlib")
    from edgeocr.bench.harness import bench_command

    result = bench_command(data, mode.value, models, peers, threads, batch, out,
                           progress=None if quiet else typer.echo)
    typer.echo(f"report: {result['outputs']['markdown']} and {result['outputs']['html']}")


@app.command("version")
def version() -> None:
    """Print the edgeocr version."""
    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return 2, an interrupted run returns 130."""
    try:
        app(args=argv, standalone_mode=True)
    except Interrupted as exc:
        typer.echo(f"interrupted: {exc}", err=True)
        return 130
    except EdgeOCRError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
