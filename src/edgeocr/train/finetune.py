"""``edgeocr finetune``: adapt a trained recogniser to a user's own labelled crops.

One command does what a user would otherwise script:

1. read ``DIR/labels.tsv`` against the model's charset (unusable lines are skipped and listed
   with ``file:line``),
2. hold out a share of the user's crops per category (seeded, written to ``OUT/split/``),
3. score the starting model on the held-out crops ("before"),
4. train from the starting weights on the rest, mixed with synthetic lines at ``--synthetic-ratio``
   (the synthetic share keeps the model from forgetting codes the user has few of),
5. export the final weights (the held-out crops never choose a checkpoint, so the "after" figure
   is not tuned on them) and score them on the same held-out crops,
6. write ``OUT/finetune_report.json`` and ``OUT/finetune_report.md``: before, after, per category,
   and every held-out read that changed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import DataError, EdgeOCRError, ModelError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.labels import LABELS_FILE, LabelledImage, read_labels

SPLIT_DIR = "split"
TRAIN_SPLIT = "train.tsv"
HOLDOUT_SPLIT = "holdout.tsv"
REPORT_JSON = "finetune_report.json"
REPORT_MD = "finetune_report.md"
MAX_SKIPPED_SHOWN = 20


def resolve_init(init: str | Path) -> tuple[Path | None, Path]:
    """(ONNX model or None, weights file) for a shipped model name, an ``.onnx`` path, or a ``.pt``/``.ckpt``.

    An ``.onnx``'s weights are :func:`~edgeocr.models.weights.trainable_weights`: the ``.pt`` beside it, or
    the ``.onnx`` itself for an imported architecture (PP-OCR).
    """
    from edgeocr.core.sidecar import load_sidecar, sidecar_path
    from edgeocr.models.weights import trainable_weights, weights_path
    from edgeocr.runtime.models import resolve_model

    candidate = Path(init)
    if candidate.suffix in (".pt", ".ckpt"):
        if not candidate.is_file():
            raise ModelError(f"weights file {candidate} does not exist")
        return None, candidate
    onnx = resolve_model(init)
    sidecar = sidecar_path(onnx)
    sidecar_data = load_sidecar(sidecar) if sidecar.is_file() else None
    weights = trainable_weights(onnx, sidecar_data)
    if weights is not None:
        return onnx, weights
    note = sidecar_data.optimization if sidecar_data is not None else None
    if note is not None:
        # An int8 graph cannot be trained further: fine-tune its float source, then optimise again.
        raise ModelError(
            f"{onnx} is an optimised model ({', '.join(note.steps)} of {note.source}) "
            f"without fine-tuning weights; fine-tune with --init {note.source} and run "
            f"`edgeocr optimize` with the same steps on the result"
        )
    raise ModelError(
        f"{onnx} has no fine-tuning weights beside it ({weights_path(onnx).name}): the wheel carries no "
        "training weights; start from --init accurate or --init ppocrv6 (their ONNX files carry "
        "their weights), from a source checkout's model, or pass a model.pt or training checkpoint"
    )


@dataclass(frozen=True)
class StartingModel:
    """What a fine-tuning run starts from."""

    cfg: RecognizerConfig  # the network and charset the run trains
    init: str | Path  # TrainConfig.init: a source name, an imported .onnx, or a weights file
    onnx: Path | None  # the exported starting model, to score it; None: exported once into OUT/init


def starting_model(init: str, add_chars: str = "") -> StartingModel:
    """Resolve ``--init``: a pretrained source ('ppocrv6'), a shipped model name, an ``.onnx``, a ``.pt``/``.ckpt``.

    A pretrained source reads every printable ASCII character (:data:`~edgeocr.core.charset.ASCII_CHARSET`);
    ``add_chars`` extends that (its own rows where its dictionary has the characters, new rows
    otherwise). A trained model's head is fixed, so it refuses them.
    """
    from edgeocr.core.charset import ASCII_CHARSET
    from edgeocr.models.factory import default_config
    from edgeocr.models.pretrained import SOURCES, load_init
    from edgeocr.models.weights import load_weights

    if init in SOURCES:
        extra = "".join(c for c in dict.fromkeys(add_chars) if c not in ASCII_CHARSET)
        try:
            cfg = default_config(SOURCES[init].arch, ASCII_CHARSET + extra)
        except ValueError as exc:
            raise EdgeOCRError(f"--add-chars: {exc}") from None
        return StartingModel(cfg=cfg, init=init, onnx=None)
    if add_chars:
        raise EdgeOCRError(
            f"--add-chars needs a pretrained source as --init (one of {', '.join(sorted(SOURCES))}): "
            f"the head of {init} is trained for its own charset"
        )
    onnx, weights = resolve_init(init)
    if weights.suffix == ".onnx":
        from edgeocr.core.sidecar import load_sidecar, sidecar_path

        cfg = load_sidecar(sidecar_path(weights)).config
        load_init(weights, cfg)  # checks the file against its sidecar before any work
        return StartingModel(cfg=cfg, init=weights, onnx=onnx)
    cfg, _ = load_weights(weights)
    return StartingModel(cfg=cfg, init=weights, onnx=onnx)


def _export_start(start: StartingModel, out: Path) -> Path:
    """Export the starting weights once, to score them as the runtime reads."""
    from edgeocr.models.export import export_onnx
    from edgeocr.models.factory import build_from_config
    from edgeocr.models.pretrained import load_init

    network = build_from_config(start.cfg)
    network.load_state_dict(load_init(start.init, start.cfg))
    return export_onnx(network.eval(), start.cfg, out / "init" / "model.onnx")


def split_holdout(
    samples: Sequence[LabelledImage], share: float, seed: int
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(train, holdout): ``share`` of each category held out (at least one where a category has two or more)."""
    if not 0 < share < 1:
        raise EdgeOCRError(f"--holdout must be between 0 and 1 (exclusive), got {share}")
    by_category: dict[str, list[LabelledImage]] = defaultdict(list)
    for sample in samples:
        by_category[sample.category].append(sample)
    rng = np.random.default_rng(seed)
    train: list[LabelledImage] = []
    holdout: list[LabelledImage] = []
    for category in sorted(by_category):
        items = by_category[category]
        order = rng.permutation(len(items))
        n_hold = min(len(items) - 1, max(1, round(share * len(items)))) if len(items) > 1 else 0
        holdout += [items[i] for i in order[:n_hold]]
        train += [items[i] for i in order[n_hold:]]
    if not holdout or not train:
        raise DataError(f"too few usable crops ({len(samples)}) to hold {share:.0%} out and still train on the rest")
    return sorted(train, key=lambda s: s.line), sorted(holdout, key=lambda s: s.line)


def _labels_file(samples: Sequence[LabelledImage]) -> bytes:
    # Absolute paths: the split files live in OUT, the images stay in the user's folder.
    return "".join(f"{s.path.resolve()}\t{s.text}\n" for s in samples).encode("utf-8")


def _write_split(
    out: Path, train: Sequence[LabelledImage], holdout: Sequence[LabelledImage], resume: bool
) -> tuple[Path, Path]:
    folder = out / SPLIT_DIR
    paths = (folder / TRAIN_SPLIT, folder / HOLDOUT_SPLIT)
    for path, samples in zip(paths, (train, holdout), strict=True):
        data = _labels_file(samples)
        if resume and path.is_file() and path.read_bytes() != data:
            raise EdgeOCRError(
                f"cannot resume: {path} differs from the split of these settings "
                "(same --data, --holdout and --seed are needed)"
            )
        atomic_write_bytes(path, data)
    return paths


def _score(model: Path, samples: list[LabelledImage], threads: int) -> dict[str, Any]:
    from edgeocr.measure.evaluate import evaluate_samples
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

    recognizer = OnnxRecognizer(model, EngineConfig(intra_op_threads=threads))

    def read(image: np.ndarray) -> tuple[str, float]:
        line = recognizer.recognize([image])[0]
        return line.text, line.confidence

    return evaluate_samples(read, samples)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "char_accuracy", "exact_match", "char_accuracy_relaxed", "exact_match_relaxed")
    return {
        **{k: result[k] for k in keys},
        "per_category": {c: {k: r[k] for k in keys} for c, r in result["per_category"].items()},
    }


def _report_markdown(report: dict[str, Any]) -> str:
    before, after = report["before"], report["after"]
    lines = [
        "# Fine-tuning report",
        "",
        f"Started from `{report['init']}`; {report['train_samples']} of the user's crops trained, "
        f"{report['holdout_samples']} held out (never trained on, never used to pick a checkpoint), "
        f"synthetic share {report['synthetic_ratio']:.0%}, {report['steps']} steps, distillation weight "
        f"{report['distill_weight']} toward the starting model, {report['freeze_stages']} stages frozen.",
        "",
    ]
    validation = report["synthetic_validation"]
    if validation.get("val_char_acc") is not None:
        lines += [
            f"Synthetic validation lines: character accuracy {100 * validation['val_char_acc']:.1f} %, "
            f"exact {100 * (validation['val_exact'] or 0):.1f} %.",
            "",
        ]
    if before is None or after is None:
        return "\n".join(lines + ["No user crops: nothing held out to compare before and after."]) + "\n"
    rows = [("ALL", before, after)] + [
        (c, before["per_category"][c], after["per_category"][c]) for c in sorted(after["per_category"])
    ]
    lines += [
        "| category | n | char acc before | char acc after | exact before | exact after |",
        "|---|---|---|---|---|---|",
    ]
    for name, b, a in rows:
        lines.append(
            f"| {name or '-'} | {a['n']} | {100 * b['char_accuracy']:.1f} | {100 * a['char_accuracy']:.1f} "
            f"| {100 * b['exact_match']:.1f} | {100 * a['exact_match']:.1f} |"
        )
    if report["changed"]:
        lines += ["", "## Held-out reads that changed", "", "| file | label | before | after |", "|---|---|---|---|"]
        lines += [f"| {c['file']} | `{c['label']}` | `{c['before']}` | `{c['after']}` |" for c in report["changed"]]
    return "\n".join(lines) + "\n"


def _readable(samples: Sequence[LabelledImage], labels: Path) -> tuple[list[LabelledImage], list[str]]:
    """(the crops whose image loads, ``labels.tsv:LINE: why`` for each of the others)."""
    from edgeocr.core.failures import describe_failure
    from edgeocr.measure.evaluate import load_image_file

    readable, reasons = [], []
    for sample in samples:
        try:
            load_image_file(sample.path)
        except Exception as exc:  # an odd file costs its line, not the run (Ctrl-C still stops it)
            reasons.append(f"{labels}:{sample.line}: {describe_failure(exc)}")
        else:
            readable.append(sample)
    return readable, reasons


def _user_crops(data: Path, charset: Any, skip_bad_labels: bool) -> tuple[list[LabelledImage], list[str]]:
    """The user's labelled crops; a label the charset cannot spell stops the run (naming ``labels.tsv:LINE``)
    unless ``skip_bad_labels``. Crops whose image does not load are skipped and listed; when none is left,
    the run stops (:class:`DataError`, exit 2) before anything is trained or exported."""
    samples, skipped = read_labels(data, charset, strict=False, check_files=True)
    spelling = [r for r in skipped if "not in the model's charset" in r]
    if spelling and not skip_bad_labels:
        shown = "\n  ".join(spelling[:MAX_SKIPPED_SHOWN])
        more = f"\n  ... and {len(spelling) - MAX_SKIPPED_SHOWN} more" if len(spelling) > MAX_SKIPPED_SHOWN else ""
        raise DataError(
            f"{len(spelling)} label(s) use characters the model cannot read:\n  {shown}{more}\n"
            "fix the labels, pass --skip-bad-labels to train without those lines, or start from a "
            "pretrained source (--init ppocrv6) with --add-chars for the missing characters"
        )
    labels = data / LABELS_FILE if data.is_dir() else data
    samples, unreadable = _readable(samples, labels)
    if not samples:
        shown = "\n  ".join(unreadable[:MAX_SKIPPED_SHOWN])
        raise DataError(
            f"{labels}: no labelled crop can be read ({len(unreadable)} images fail to load), nothing to "
            f"fine-tune on:\n  {shown}"
        )
    skipped = skipped + unreadable
    for reason in skipped[:MAX_SKIPPED_SHOWN]:
        print(f"skipped {reason}")
    if len(skipped) > MAX_SKIPPED_SHOWN:
        print(f"... and {len(skipped) - MAX_SKIPPED_SHOWN} more lines skipped (all listed in {REPORT_JSON})")
    return samples, skipped


def finetune_command(
    init: str,
    data: Path | None,
    out: Path,
    synthetic_ratio: float = 0.5,
    holdout: float = 0.2,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 3e-4,
    workers: int = 1,
    seed: int = 0,
    accelerator: str = "auto",
    precision: str = "auto",
    templates: Sequence[Path] = (),
    fonts: Sequence[Path] = (),
    threads: int = 0,
    resume: bool = False,
    progress: bool = True,
    distill_weight: float = 1.0,
    distill_temperature: float = 2.0,
    freeze_stages: int = 0,
    skip_bad_labels: bool = False,
    add_chars: str = "",
    synthetic_lines: int = 20000,
    report_data: Sequence[Path] = (),
    report_every_n_steps: int = 500,
    val_lines: int = 500,
) -> dict[str, Any]:
    """Fine-tune ``init`` on the crops of ``data`` (or on synthetic lines alone when ``data`` is None);
    returns the report (also written to ``out``).

    ``distill_weight`` keeps the starting model's frame posteriors on each batch (a frame-KL term
    toward it, frozen), so that what it read well before (real photos, for a pretrained source)
    does not regress while it learns the new crops. Without ``data``, the run trains on
    ``synthetic_lines`` synthetic lines per epoch and reports on its synthetic validation set only
    (``val_lines`` held-out synthetic lines, which also guard the run's own checks).
    """
    from edgeocr.train.command import require_train_extra

    require_train_extra()
    from pydantic import ValidationError

    from edgeocr.train.trainer import MODEL_FILE, TrainConfig, run_training

    if not 0 <= synthetic_ratio < 1:
        raise EdgeOCRError(f"--synthetic-ratio must be in [0, 1), got {synthetic_ratio}")
    out = Path(out)
    start = starting_model(init, add_chars)
    init_cfg = start.cfg
    train: list[LabelledImage] = []
    held: list[LabelledImage] = []
    skipped: list[str] = []
    data_files: tuple[Path, ...] = ()
    if data is not None:
        samples, skipped = _user_crops(Path(data), init_cfg.charset_obj, skip_bad_labels)
        train, held = split_holdout(samples, holdout, seed)
        train_file, _ = _write_split(out, train, held, resume)
        data_files = (train_file,)
        synthetic = round(len(train) * synthetic_ratio / (1 - synthetic_ratio)) if synthetic_ratio else 0
    else:
        synthetic = synthetic_lines

    before = None
    if held:
        before = _score(start.onnx or _export_start(start, out), held, threads)

    try:
        cfg = TrainConfig(
            arch=init_cfg.arch,
            input_height=init_cfg.input_height,
            max_width=init_cfg.max_width,
            charset=init_cfg.charset,
            data=data_files,
            synthetic_per_epoch=max(synthetic, 0),
            synthetic_ratio=synthetic_ratio if (synthetic and data_files) else None,
            synthetic_seed=seed,
            val_synthetic=val_lines,
            templates=tuple(Path(t) for t in templates),
            fonts=tuple(Path(f) for f in fonts),
            epochs=1_000_000,
            max_steps=steps,
            batch_size=batch_size,
            lr=lr,
            warmup_fraction=0.05,
            workers=workers,
            precision=precision,
            accelerator=accelerator,
            early_stopping_patience=None,
            checkpoint_every_n_steps=max(50, steps // 10),
            init=Path(start.init),
            export="last",
            out=out,
            seed=seed,
            progress_bar=progress,
            distill_weight=distill_weight,
            distill_temperature=distill_temperature,
            freeze_stages=freeze_stages,
            report_data=tuple(Path(d) for d in report_data),
            report_every_n_steps=report_every_n_steps,
        )
    except ValidationError as exc:
        raise EdgeOCRError(f"invalid fine-tuning settings: {exc.errors()[0]['msg']}") from None
    model = run_training(cfg, resume=resume)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    report: dict[str, Any] = {
        "init": str(init),
        "init_weights": str(start.init),
        "data": str(data) if data is not None else None,
        "model": str(out / MODEL_FILE),
        "train_samples": len(train),
        "holdout_samples": len(held),
        "synthetic_ratio": synthetic_ratio if data is not None else 1.0,
        "synthetic_per_epoch": synthetic,
        "steps": metrics.get("steps"),
        "seed": seed,
        "distill_weight": distill_weight,
        "freeze_stages": freeze_stages,
        "skipped_lines": skipped,
        "synthetic_validation": {k: metrics.get(k) for k in ("val_char_acc", "val_exact")},
        "before": None,
        "after": None,
        "changed": [],
    }
    if before is not None:
        after = _score(model, held, threads)
        before_reads = {p["file"]: p["prediction"] for p in before["predictions"]}
        report["changed"] = [
            {"file": p["file"], "label": p["label"], "before": before_reads[p["file"]], "after": p["prediction"]}
            for p in after["predictions"]
            if p["prediction"] != before_reads[p["file"]]
        ]
        report["before"], report["after"] = _summary(before), _summary(after)
        report["holdout_predictions"] = {"before": before["predictions"], "after": after["predictions"]}
    atomic_write_bytes(out / REPORT_JSON, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    atomic_write_bytes(out / REPORT_MD, _report_markdown(report).encode("utf-8"))
    return report
