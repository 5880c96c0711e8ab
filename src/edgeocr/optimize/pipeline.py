"""``edgeocr optimize``: distil, prune, quantise and convert a recogniser, then measure it beside its baseline.

Steps run in this order, each only when asked for, each writing its model into ``OUT/steps/NN-name/``:

1. ``--distill-from TEACHER``: MODEL (an architecture name or a model with ``.pt`` weights) is trained
   as the student of TEACHER (:func:`edgeocr.optimize.distill.distill`); the baseline is then TEACHER;
2. ``--prune RATIO --method magnitude|structured`` (:func:`edgeocr.optimize.pruning.prune`), fine-tuned
   with the unpruned model as teacher (CTC + ``--distill-weight`` times the frame KL; 0: CTC alone);
3. ``--int8``: static post-training quantisation (:mod:`.quantize`; with ``--engine openvino``: NNCF),
   behind the accuracy gate below, after ``--qat-steps N`` of quantisation-aware fine-tuning (:mod:`.qat`)
   when asked; ``--fp16``: float16 weights (ONNX Runtime on a GPU, OpenVINO, or
   TensorRT); ``--bf16``: bfloat16 inference on CPUs that have it (OpenVINO);
4. ``--engine``: ``onnxruntime`` (the ONNX model itself), ``openvino`` (IR ``model.xml``/``.bin``) or
   ``tensorrt`` (an engine built for this machine's GPU).

Accuracy is scored on the ``--eval`` sets (default: 500 synthetic lines), which also gate int8, and on
the ``--report-data`` sets, which are only reported: real crops kept for evaluation can be measured
beside the source without any choice being made on them.

The result is ``OUT/model.*`` with its sidecar (checksum of its own bytes, and an optimisation note
listing the steps), and the report card ``OUT/report.json`` / ``OUT/report.md`` (:mod:`.report`).

**Accuracy gate** (int8): the quantised model's character accuracy is compared with the step's input
model on every eval set. When it drops by more than ``--max-drop-pt`` points on any set, the layers
whose quantisation moves the output most (:func:`.quantize.node_sensitivity`) are kept in float, one
more per round, until the drop is within the threshold. If it never is, the command **refuses**: it
exits non-zero and writes nothing to OUT but the report explaining why (no fallback model that the user
could mistake for an int8 one).

**Safety**: every argument is checked before any work (bad ratio, missing sidecar, empty calibration
folder, engine not installed, an OUT that would replace the source model...). Work happens in a
temporary folder beside OUT, which appears complete or not at all, and never replaces the folder that
holds the source (or teacher) model, even with ``--overwrite``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeocr.core.atomic import atomic_output_dir
from edgeocr.core.errors import EdgeOCRError, Interrupted, ModelError, OutputError
from edgeocr.core.sidecar import OptimizationNote, load_sidecar, sidecar_path
from edgeocr.optimize.calibration import LineSet, calibration_images, check_calibration, eval_sets, network_batches
from edgeocr.optimize.derived import StepModel, onnx_model, save_derived_onnx
from edgeocr.optimize.engines import convert_to_openvino, write_openvino_sidecar
from edgeocr.optimize.quantize import (
    FASTEST_ACTIVATIONS,
    Int8Settings,
    node_sensitivity,
    op_types,
    prepare_for_quantisation,
    quantize_int8,
)
from edgeocr.optimize.report import write_card
from edgeocr.runtime.engines import (
    OpenVinoRecognizer,
    TensorRtRecognizer,
    build_tensorrt_engine,
    default_trt_cache,
    require,
    require_openvino,
    require_tensorrt,
)
from edgeocr.runtime.providers import parse_providers
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

MAX_GATE_ROUNDS = 12
SPEED_BATCHES = (1, 32, 64)

Progress = Callable[[str], None]


class OptimizeSettings(BaseModel):
    """Everything one ``edgeocr optimize`` run is given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        min_length=1,
        description="The model to optimise: 'default', an .onnx with its sidecar, or "
        "(with distill_from) an architecture name such as 'crnn_s'.",
    )
    out: Path = Field(description="Output folder: the optimised model, steps/ and the report card.")
    int8: bool = Field(default=False, description="Int8 post-training quantisation behind the accuracy gate.")
    calib: str = Field(
        default="synthetic",
        description="Calibration lines: a folder of line images, a labels.tsv folder, or synthetic[:N].",
    )
    calib_lines: int = Field(default=256, ge=1, description="At most this many calibration lines are used.")
    calib_method: Literal["minmax", "percentile", "entropy"] = Field(
        default="minmax",
        description="How activation ranges come from the calibration lines: minmax (the extremes seen), "
        "percentile (the 99.999th, outliers clipped) or entropy (ranges minimising KL divergence).",
    )
    fp16: bool = Field(default=False, description="Float16 weights (GPU / OpenVINO / TensorRT).")
    bf16: bool = Field(default=False, description="Bfloat16 inference on the CPU (OpenVINO).")
    prune: float | None = Field(
        default=None,
        description="Share of weights (magnitude) or channels (structured) to prune, in (0, 1); None: no pruning.",
    )
    prune_method: Literal["magnitude", "structured"] = Field(default="magnitude", description="Pruning method.")
    finetune_steps: int = Field(default=300, ge=0, description="Fine-tuning steps after pruning.")
    distill_from: str | None = Field(default=None, description="Teacher model: MODEL is trained as its student.")
    distill_steps: int = Field(default=2000, ge=1, description="Distillation training steps.")
    distill_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of the frame KL to the teacher; 0: the same student, lines and steps without "
        "the teacher (the baseline a distilled student is compared with).",
    )
    input_height: int | None = Field(
        default=None,
        ge=8,
        description="Student's input height with distill_from (None: the teacher's for an architecture, "
        "the model's own for a trained student); the teacher reads each batch at its own height.",
    )
    engine: Literal["onnxruntime", "openvino", "tensorrt"] = Field(
        default="onnxruntime", description="Engine the result is built for."
    )
    providers: tuple[str, ...] = Field(
        default=("cpu",),
        description="ONNX Runtime execution providers for measuring: cpu, cuda, tensorrt (refused when not available).",
    )
    eval: tuple[Path, ...] = Field(
        default=(), description="labels.tsv folders to score on (default: 500 synthetic lines of the test seed)."
    )
    report_data: tuple[Path, ...] = Field(
        default=(),
        description="labels.tsv folders scored and timed for the report card only (real crops kept for "
        "evaluation): the int8 gate never sees them, so no choice is made on them.",
    )
    max_drop_pt: float = Field(
        default=0.5,
        description="Accuracy gate: largest character-accuracy drop (points) int8 may cost on any eval set.",
    )
    qat_steps: int = Field(
        default=0,
        ge=0,
        description="Quantisation-aware fine-tuning steps before int8 "
        "(needs the .pt weights); 0: post-training quantisation only.",
    )
    quant_format: Literal["auto", "qdq", "qoperator"] = Field(
        default="auto", description="ONNX int8 format; auto: qoperator for ONNX Runtime, qdq for TensorRT."
    )
    activations: Literal["auto", "int8", "uint8"] = Field(
        default="auto",
        description="Int8 activation type: int8 (S8S8) or uint8 (U8S8); auto: the faster one measured "
        "for the format (uint8 with qoperator, int8 with qdq).",
    )
    threads: int = Field(default=2, ge=1, description="Threads for every measurement, baseline and optimised alike.")
    workers: int = Field(
        default=1,
        ge=1,
        description="Throughput only: this many threads read batches at once "
        "from one session, baseline and optimised alike (e.g. --threads 1 --workers 2: one "
        "worker per core, as a 2-worker server runs).",
    )
    speed_rounds: int = Field(
        default=3, ge=1, description="Throughput rounds, baseline and optimised alternating; the median is reported."
    )
    speed_lines: int = Field(
        default=2048, ge=64, description="Throughput is measured on the first this many lines of the first eval set."
    )
    seed: int = Field(default=0, description="Seed of the training steps (distillation, pruning fine-tuning).")
    overwrite: bool = Field(default=False, description="Replace an existing OUT (never the source model's folder).")


class AccuracyGateRefused(EdgeOCRError):
    """Int8 cost more accuracy than allowed even with the sensitive layers in float; OUT holds only the report."""

    def __init__(self, message: str, attempts: list[dict], ranking: list[dict] | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.ranking = ranking


@dataclass
class Run:
    """State of one run: settings, the folders, the eval sets and what each step did."""

    settings: OptimizeSettings
    work: Path
    baseline: Path
    note_source: tuple[str, str]  # (as given, sha256) of the baseline
    sets: list[LineSet] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    calibration: str = ""  # what the int8 step calibrated on
    progress: Progress | None = None
    _scores: dict[tuple[Path, str], dict[str, float]] = field(default_factory=dict)
    _images: dict[str, tuple[list[str], list[np.ndarray]]] = field(default_factory=dict)

    def say(self, message: str) -> None:
        if self.progress:
            self.progress(message)

    def step_dir(self, name: str) -> Path:
        return self.work / "steps" / f"{len(self.steps) + 1:02d}-{name}"

    def engine_config(self, max_batch_size: int = 16) -> EngineConfig:
        return EngineConfig(
            intra_op_threads=self.settings.threads,
            max_batch_size=max_batch_size,
            providers=parse_providers(self.settings.providers),
        )

    def recognizer(self, model: StepModel, max_batch_size: int = 16) -> OnnxRecognizer:
        engine = self.engine_config(max_batch_size)
        if model.kind == "openvino":
            return OpenVinoRecognizer(model.path, engine)
        if model.kind == "tensorrt":
            return TensorRtRecognizer(model.path, engine, precision=model.precision)
        return OnnxRecognizer(model.path, engine)

    def char_accuracy(self, model: StepModel) -> dict[str, float]:
        """Character accuracy on every gating eval set (not the report-only ones), each line read alone
        (as edgeocr eval reads)."""
        from edgeocr.data.labels import read_labels
        from edgeocr.measure.evaluate import load_images
        from edgeocr.measure.metrics import accuracy

        key = (model.path, model.precision)
        if key not in self._scores:
            recognizer = self.recognizer(model)
            scores = {}
            for line_set in (s for s in self.sets if s.gates):
                if line_set.name not in self._images:
                    samples, _ = read_labels(line_set.folder, strict=True)
                    self._images[line_set.name] = ([s.text for s in samples], load_images(samples))
                labels, images = self._images[line_set.name]
                predictions = [recognizer.recognize([image])[0].text for image in images]
                scores[line_set.name] = accuracy(labels, predictions)["char_accuracy"]
            self._scores[key] = scores
        return self._scores[key]

    def note(self, names: Sequence[str], details: dict) -> OptimizationNote:
        return OptimizationNote(
            source=self.note_source[0], source_sha256=self.note_source[1], steps=tuple(names), details=details
        )


# --- checks before any work --------------------------------------------------------------------


def _is_architecture(name: str) -> bool:
    from edgeocr.models.factory import available_architectures

    return name in available_architectures()


def _resolve_with_sidecar(name: str, role: str) -> Path:
    from edgeocr.models.sources import SOURCES
    from edgeocr.runtime.models import resolve_model

    try:
        path = resolve_model(name)
    except ModelError:
        if name in SOURCES:  # a pretrained source is imported once, then optimised like any model
            raise ModelError(
                f"{name} is a pretrained source, not a model file: import it first with "
                f"`edgeocr import-recognizer {name} --out DIR`, then optimise DIR/model.onnx"
            ) from None
        raise
    if path.suffix != ".onnx":
        raise ModelError(f"{role} {path} is not an .onnx model")
    load_sidecar(sidecar_path(path))  # ModelError "sidecar ... is missing; re-export" now, not after the work
    return path


def check_settings(s: OptimizeSettings) -> tuple[Path, list[Path]]:
    """Refuse every bad argument before any work; returns the baseline model and the files OUT must not replace."""
    if not (s.int8 or s.fp16 or s.bf16 or s.prune is not None or s.distill_from or s.engine != "onnxruntime"):
        raise EdgeOCRError(
            "nothing to do: ask for at least one of --int8, --fp16, --bf16, --prune, --distill-from "
            "or --engine openvino|tensorrt"
        )
    if s.input_height is not None and not s.distill_from:
        raise EdgeOCRError("--input-height sets a student's height: add --distill-from TEACHER")
    if s.qat_steps and not s.int8:
        raise EdgeOCRError("--qat-steps fine-tunes for int8: add --int8")
    if s.fp16 and s.bf16:
        raise EdgeOCRError("--fp16 and --bf16 exclude each other: choose one floating-point precision")
    if s.prune is not None and not 0 < s.prune < 1:
        raise EdgeOCRError(f"--prune takes a ratio strictly between 0 and 1 (the share pruned), got {s.prune}")
    if s.bf16 and s.engine != "openvino":
        raise EdgeOCRError(
            "--bf16 runs through OpenVINO's bfloat16 CPU kernels: add --engine openvino (ONNX Runtime "
            "has no bfloat16 CPU kernels for these layers; TensorRT on Jetson uses --fp16)"
        )
    providers = parse_providers(s.providers)  # EngineUnavailable for CUDA / TensorRT providers not present
    if s.fp16 and s.engine == "onnxruntime" and providers == ("CPUExecutionProvider",):
        raise EdgeOCRError(
            "--fp16 with ONNX Runtime is for GPUs (--providers cuda): ONNX Runtime's CPU provider "
            "has no float16 kernels for these layers (and crashed loading such a model here); on a "
            "CPU use --int8, or --engine openvino with --bf16"
        )
    if s.engine == "openvino":
        require_openvino()
        if s.int8:
            require("nncf", "--int8 --engine openvino", "pip install 'edgeocr[optimize]'")
    if s.engine == "tensorrt":
        require_tensorrt()  # loud: TensorRT or its GPU missing; never a CPU fallback
    if s.int8:
        check_calibration(s.calib)  # DataError for a missing or empty folder, or a bad synthetic:N
        int8_settings(s)
    protected: list[Path] = []
    if s.distill_from:
        teacher = _resolve_with_sidecar(s.distill_from, "teacher")
        protected.append(teacher)
        if not _is_architecture(s.model):
            protected.append(_resolve_with_sidecar(s.model, "student"))
        baseline = teacher
    else:
        if _is_architecture(s.model):
            raise EdgeOCRError(
                f"{s.model} is an architecture, not a trained model: an untrained network can only be "
                "optimised as the student of --distill-from TEACHER"
            )
        baseline = _resolve_with_sidecar(s.model, "model")
        protected.append(baseline)
    _check_out(s.out, protected, s.overwrite)
    return baseline, protected


def _check_out(out: Path, protected: Sequence[Path], overwrite: bool) -> None:
    final = out.absolute().resolve()
    for model in protected:
        if model.absolute().resolve().is_relative_to(final):
            raise OutputError(
                f"--out {out} holds the model {model}: writing there would replace it; choose a new folder"
            )
    if final.exists() and not overwrite and (not final.is_dir() or any(final.iterdir())):
        raise OutputError(f"{out} already exists; pass --overwrite to replace it, or choose a new folder")


# --- steps ---------------------------------------------------------------------------------------


def _record(run: Run, name: str, model: StepModel, started: float, **extra) -> None:
    run.steps.append(
        {
            "name": name,
            "model": str(model.path.relative_to(run.work)),
            "format": model.kind,
            "size_bytes": model.size_bytes,
            "seconds": round(time.perf_counter() - started, 2),
            **extra,
        }
    )


def _step_names(run: Run, name: str) -> list[str]:
    return [*(s["name"] for s in run.steps), name]


def distill_step(run: Run, teacher: Path) -> StepModel:
    from edgeocr.optimize.distill import distill

    s, started, folder = run.settings, time.perf_counter(), run.step_dir("distill")
    student = s.model if _is_architecture(s.model) else _resolve_with_sidecar(s.model, "student")
    how = f"kl weight {s.distill_weight}" if s.distill_weight else "no teacher term: the baseline"
    run.say(f"distilling {s.model} from {teacher} ({s.distill_steps} steps, {how})")
    result = distill(
        student,
        teacher,
        folder,
        steps=s.distill_steps,
        seed=s.seed,
        kl_weight=s.distill_weight,
        input_height=s.input_height,
    )
    model = onnx_model(result.onnx_path)
    _record(
        run,
        "distill",
        model,
        started,
        settings={
            "student": s.model,
            "teacher": str(teacher),
            "steps": s.distill_steps,
            "kl_weight": s.distill_weight,
            "input_height": s.input_height,
        },
        stats=result.stats,
    )
    return model


def prune_step(run: Run, model: StepModel) -> StepModel:
    from edgeocr.optimize.pruning import prune

    s, started, folder = run.settings, time.perf_counter(), run.step_dir("prune")
    kl_weight = s.distill_weight if s.finetune_steps else 0.0  # no recovery steps, nothing to teach
    teacher = f", the unpruned model teaching (kl weight {kl_weight})" if kl_weight else ""
    run.say(f"pruning {s.prune:.0%} ({s.prune_method}), {s.finetune_steps} fine-tuning steps{teacher}")
    result = prune(
        model.path,
        s.prune,
        s.prune_method,
        folder,
        finetune_steps=s.finetune_steps,
        seed=s.seed,
        recovery_kl_weight=kl_weight,
    )
    pruned = onnx_model(result.onnx_path)
    _record(
        run,
        "prune",
        pruned,
        started,
        settings={
            "ratio": s.prune,
            "method": s.prune_method,
            "finetune_steps": s.finetune_steps,
            "kl_weight": kl_weight,
        },
        stats=result.stats,
    )
    return pruned


def _drops(reference: dict[str, float], candidate: dict[str, float]) -> dict[str, float]:
    return {name: round(100 * (reference[name] - candidate[name]), 3) for name in reference}


def gated(
    run: Run,
    build: Callable[[list[str], Path], StepModel],
    rank: Callable[[], list[str]],
    reference: StepModel,
    folder: Path,
) -> tuple[StepModel, list[dict], list[dict] | None]:
    """Build the quantised model, keeping the most sensitive layers in float until the drop is within the gate.

    ``build(kept_float, folder)`` makes a candidate; ``rank()`` orders the layers, most sensitive first
    (computed only if the first candidate fails). Returns (model, attempts, sensitivity ranking)."""
    limit = run.settings.max_drop_pt
    baseline = run.char_accuracy(reference)
    kept: list[str] = []
    attempts: list[dict] = []
    ranking: list[dict] | None = None
    for round_number in range(MAX_GATE_ROUNDS + 1):
        candidate = build(list(kept), folder / f"attempt-{round_number}")
        drops = _drops(baseline, run.char_accuracy(candidate))
        accepted = max(drops.values()) <= limit
        attempts.append({"kept_float": list(kept), "drop_pt": drops, "accepted": accepted})
        run.say(
            f"  gate: {len(kept)} layer(s) in float -> drop {max(drops.values()):+.2f} pt "
            f"({'accepted' if accepted else f'over {limit} pt'})"
        )
        if accepted:
            return candidate, attempts, ranking
        if ranking is None:
            run.say("  ranking the layers by how much their quantisation moves the output")
            ranking = rank()
        remaining = [r["node"] for r in ranking if r["node"] not in kept]
        if len(remaining) <= 1:  # keeping every layer in float would just be the float model
            break
        kept.append(remaining[0])
    raise AccuracyGateRefused(
        f"int8 costs {max(attempts[-1]['drop_pt'].values()):.2f} points of character accuracy even with "
        f"{len(attempts[-1]['kept_float'])} layer(s) kept in float, more than --max-drop-pt {limit}; no model was "
        "written (raise --max-drop-pt, calibrate on data closer to yours with --calib, or keep the float model)",
        attempts,
        ranking,
    )


def _keep(chosen: StepModel, folder: Path) -> StepModel:
    """Move the chosen candidate's files (and sidecar) up into the step folder; drop every other candidate."""
    moved = []
    for source in (*chosen.files, sidecar_path(chosen.path)):
        source.rename(folder / source.name)
        moved.append(folder / source.name)
    for child in folder.iterdir():
        if child not in moved:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return StepModel(
        folder / chosen.path.name, chosen.kind, tuple(folder / f.name for f in chosen.files), chosen.precision
    )


def _calibration(run: Run, model: StepModel) -> list[np.ndarray]:
    s = run.settings
    images, description = calibration_images(s.calib, run.work / "data", s.calib_lines)
    run.say(f"calibrating on {description}")
    run.calibration = description
    return network_batches(images, load_sidecar(sidecar_path(model.path)).config)


def qat_step(run: Run, model: StepModel) -> StepModel:
    from edgeocr.optimize.qat import QAT_LR, qat_finetune

    s, started, folder = run.settings, time.perf_counter(), run.step_dir("qat")
    run.say(f"quantisation-aware fine-tuning ({s.qat_steps} steps)")
    path, stats = qat_finetune(model.path, folder / "model.onnx", s.qat_steps, seed=s.seed)
    tuned = onnx_model(path)
    _record(run, "qat", tuned, started, settings={"steps": s.qat_steps, "lr": QAT_LR}, stats=stats)
    return tuned


def int8_settings(s: OptimizeSettings) -> Int8Settings:
    """The quantiser's settings: TensorRT reads only QDQ with symmetric int8 activations and no contrib LSTM."""
    tensorrt = s.engine == "tensorrt"
    if tensorrt and (s.quant_format == "qoperator" or s.activations == "uint8"):
        raise EdgeOCRError(
            "--engine tensorrt reads only QDQ models with int8 activations: drop --quant-format "
            "qoperator / --activations uint8"
        )
    quant_format = ("qdq" if tensorrt else "qoperator") if s.quant_format == "auto" else s.quant_format
    activations = FASTEST_ACTIVATIONS[quant_format] if s.activations == "auto" else s.activations
    return Int8Settings(
        quant_format=quant_format,
        activations=activations,
        quantize_lstm=not tensorrt,
        symmetric_activations=tensorrt,
        calibration=s.calib_method,
    )


def int8_onnx_step(run: Run, model: StepModel, reference: StepModel) -> StepModel:
    s, started, folder = run.settings, time.perf_counter(), run.step_dir("int8")
    sidecar = load_sidecar(sidecar_path(model.path))
    batches = _calibration(run, model)
    settings = int8_settings(s)
    folder.mkdir(parents=True)
    prepared = prepare_for_quantisation(model.path, folder / "prepared.onnx")
    applied = settings.describe(op_types(prepared))
    details = {"int8": applied}

    def build(kept: list[str], attempt: Path) -> StepModel:
        attempt.mkdir(parents=True)
        raw = quantize_int8(prepared, attempt / "raw.onnx", batches, sidecar.input_name, settings, exclude=kept)
        note = run.note(_step_names(run, "int8"), {**details, "kept_float": kept})
        return save_derived_onnx(raw, attempt / "model.onnx", sidecar, note)

    def rank() -> list[dict]:
        return node_sensitivity(prepared, batches, sidecar.input_name, settings, threads=s.threads)

    run.say(
        f"quantising to int8 ({settings.quant_format}, {settings.activations} activations, per-channel int8 weights)"
    )
    chosen, attempts, ranking = gated(run, build, rank, reference, folder)
    final = _keep(chosen, folder)
    _record(
        run,
        "int8",
        final,
        started,
        settings={**applied, "calibration_data": run.calibration, "max_drop_pt": s.max_drop_pt},
        gate=attempts,
        sensitivity=ranking,
        kept_float=attempts[-1]["kept_float"],
    )
    return final


def fp16_onnx_step(run: Run, model: StepModel) -> StepModel:
    from edgeocr.optimize.precision import to_fp16

    started, folder = time.perf_counter(), run.step_dir("fp16")
    folder.mkdir(parents=True)
    sidecar = load_sidecar(sidecar_path(model.path))
    raw = to_fp16(model.path, folder / "raw.onnx")
    final = save_derived_onnx(raw, folder / "model.onnx", sidecar, run.note(_step_names(run, "fp16"), {}))
    raw.unlink()
    _record(run, "fp16", final, started, settings={"weights": "float16", "io": "float32 (keep_io_types)"})
    return final


def openvino_step(run: Run, model: StepModel, reference: StepModel) -> StepModel:
    s, started, folder = run.settings, time.perf_counter(), run.step_dir("openvino")
    sidecar = load_sidecar(sidecar_path(model.path))
    precision = "bf16" if s.bf16 else "f32"
    details = {
        "engine": "openvino",
        "inference_precision": precision,
        "weights": "fp16" if s.fp16 else "fp32",
        "int8": "nncf" if s.int8 else None,
    }
    names = (
        _step_names(run, "openvino")
        + (["int8"] if s.int8 else [])
        + (["bf16"] if s.bf16 else [])
        + (["fp16"] if s.fp16 else [])
    )

    def build(kept: list[str], attempt: Path) -> StepModel:
        xml = convert_to_openvino(
            model.path,
            attempt / "model.xml",
            int8_batches=batches if s.int8 else None,
            keep_float=kept,
            fp16_weights=s.fp16,
        )
        write_openvino_sidecar(xml, sidecar, run.note(names, {**details, "kept_float": kept}))
        return StepModel(xml, "openvino", (xml, xml.with_suffix(".bin")))

    run.say(f"converting to OpenVINO ({', '.join(names[len(run.steps) :])})")
    attempts = ranking = None
    folder.mkdir(parents=True)
    if s.int8:
        batches = _calibration(run, model)

        def rank() -> list[dict]:
            prepared = prepare_for_quantisation(model.path, folder / "prepared.onnx")
            return node_sensitivity(prepared, batches, sidecar.input_name, Int8Settings(), threads=s.threads)

        chosen, attempts, ranking = gated(run, build, rank, reference, folder)
    else:
        chosen = build([], folder / "attempt-0")
    final = _keep(chosen, folder)
    _record(
        run,
        "openvino",
        final,
        started,
        settings={k: v for k, v in details.items() if v is not None},
        gate=attempts or [],
        sensitivity=ranking,
    )
    return final


def tensorrt_step(run: Run, model: StepModel) -> StepModel:
    s, started, folder = run.settings, time.perf_counter(), run.step_dir("tensorrt")
    precision = "int8" if s.int8 else "fp16" if s.fp16 else "fp32"
    folder.mkdir(parents=True)
    plan = build_tensorrt_engine(model.path, precision, default_trt_cache())
    shutil.copyfile(plan, folder / "model.plan")
    final = StepModel(model.path, "tensorrt", (folder / "model.plan",), precision=precision)
    _record(run, "tensorrt", final, started, settings={"precision": precision, "cache": str(plan)})
    return final


# --- the command ---------------------------------------------------------------------------------


def _publish(model: StepModel, run: Run, out_tmp: Path) -> StepModel:
    """Copy the final model into OUT (``model.onnx`` / ``model.xml`` + ``.bin`` / ``model.plan``) with its sidecar."""
    if model.kind == "tensorrt":
        published = _publish(onnx_model(model.path), run, out_tmp)
        shutil.copyfile(model.files[0], out_tmp / "model.plan")
        return StepModel(published.path, "tensorrt", (out_tmp / "model.plan",), model.precision)
    for source in (*model.files, sidecar_path(model.path)):
        target = out_tmp / f"model{source.suffix}"
        shutil.copyfile(source, target)
    main = out_tmp / f"model{model.path.suffix}"
    sidecar = load_sidecar(sidecar_path(model.path))
    # The published note: every step with its settings (and the layers int8 kept in float); OpenVINO's
    # precision hint stays at the top level, where OpenVinoRecognizer reads it.
    details: dict = {
        step["name"]: {
            **step.get("settings", {}),
            **({"kept_float": step["kept_float"]} if "kept_float" in step else {}),
        }
        for step in run.steps
    }
    if sidecar.optimization and "inference_precision" in sidecar.optimization.details:
        details["inference_precision"] = sidecar.optimization.details["inference_precision"]
    note = run.note([step["name"] for step in run.steps], details)
    if model.kind == "onnx":
        save_derived_onnx(main, main, sidecar, note)
        weights = model.path.with_suffix(".pt")
        if weights.is_file():  # a pruned or distilled float model stays fine-tunable
            shutil.copyfile(weights, out_tmp / "model.pt")
    else:
        write_openvino_sidecar(main, sidecar, note)
    return StepModel(main, model.kind, tuple(out_tmp / f"model{f.suffix}" for f in model.files), model.precision)


def measure(run: Run, baseline: StepModel, optimized: StepModel) -> dict:
    """Baseline and optimised model, same run, same threads: the report card's figures.

    Accuracy, latency at batch 1 and size come from one harness run per eval set. Throughput at each batch
    size is then measured in ``speed_rounds`` rounds that alternate baseline and optimised over the first
    ``speed_lines`` lines of the first set, and the median round is kept: ONNX Runtime's threads spin-wait
    on each other, so a moment of contention from another process costs one pass a lot, and alternating
    spreads it over both models instead of charging it to whichever ran second."""
    from edgeocr.data.labels import read_labels
    from edgeocr.measure.engines import EdgeOcrEngine
    from edgeocr.measure.evaluate import load_images
    from edgeocr.measure.resources import environment
    from edgeocr.measure.timing import measure_rec, measure_throughput
    from edgeocr.optimize.report import headline, model_figures

    class _Engine(EdgeOcrEngine):
        def __init__(self, model: StepModel, name: str) -> None:
            super().__init__(model.path, run.settings.threads, max_batch_size=max(SPEED_BATCHES), name=name)
            self.step_model = model

        @property
        def model_size_bytes(self) -> int:
            return self.step_model.size_bytes

        def load(self) -> None:
            self._recognizer = run.recognizer(self.step_model, self.max_batch_size)

    engines = {"baseline": _Engine(baseline, "baseline"), "optimized": _Engine(optimized, "optimized")}
    records: dict[str, list[dict]] = {"baseline": [], "optimized": []}
    for line_set in run.sets:
        run.say(f"measuring accuracy and latency of baseline and optimised on {line_set.name}")
        result = measure_rec(line_set.folder, list(engines.values()), batches=(1,), threads=run.settings.threads)
        for record in result["engines"]:
            if record["status"] != "ok":
                raise EdgeOCRError(f"{record['name']} model could not be measured: {record.get('reason')}")
            records[record["name"]].append(record)
    samples, _ = read_labels(run.sets[0].folder, strict=True)
    images = load_images(samples[: run.settings.speed_lines])
    rounds: dict[str, list[dict]] = {"baseline": [], "optimized": []}
    for index in range(run.settings.speed_rounds):
        run.say(f"throughput round {index + 1}/{run.settings.speed_rounds} on {len(images)} lines")
        for name, engine in engines.items():
            rounds[name].append(measure_throughput(engine, images, SPEED_BATCHES, run.settings.workers))
    names = [line_set.name for line_set in run.sets]
    figures = {}
    for name, recs in records.items():
        figures[name] = model_figures(recs, names)
        figures[name]["throughput_ips"] = {
            str(b): float(np.median([r[str(b)] for r in rounds[name]])) for b in SPEED_BATCHES
        }
        figures[name]["throughput_rounds"] = rounds[name]
    top = str(max(SPEED_BATCHES))
    paired = [round(o[top] / b[top], 3) for b, o in zip(rounds["baseline"], rounds["optimized"])]
    return {
        "baseline": figures["baseline"],
        "optimized": figures["optimized"],
        "throughput_measure": {
            "lines": len(images),
            "set": run.sets[0].name,
            "rounds": run.settings.speed_rounds,
            "workers": run.settings.workers,
            "kept": "median round per batch size, baseline and optimised alternating",
            f"speedup_per_round_batch{top}": paired,
            f"speedup_median_of_rounds_batch{top}": float(np.median(paired)),
        },
        "headline": headline(figures["baseline"], figures["optimized"], max(SPEED_BATCHES)),
        "environment": environment(),
    }


def optimize_command(settings: OptimizeSettings, command_line: str = "", progress: Progress | None = None) -> dict:
    """Run ``edgeocr optimize``; returns the report card (also in OUT/report.json)."""
    baseline_path, _ = check_settings(settings)
    out = settings.out.absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot create a working folder beside {out}: {exc}") from exc
    baseline_sidecar = load_sidecar(sidecar_path(baseline_path))
    run = Run(
        settings,
        work,
        baseline_path,
        (settings.distill_from or settings.model, baseline_sidecar.onnx_sha256),
        progress=progress,
    )
    card: dict = {
        "kind": "edgeocr-optimize-report",
        "version": 1,
        "command": command_line,
        "settings": settings.model_dump(mode="json"),
        "threads": settings.threads,
        "source": {
            "model": settings.distill_from or settings.model,
            "path": str(baseline_path),
            "sha256": baseline_sidecar.onnx_sha256,
        },
        "output": {"engine": settings.engine},
    }
    try:
        run.sets = eval_sets(list(settings.eval), work / "data", list(settings.report_data))
        card["eval_sets"] = [
            {
                "name": s.name,
                "path": str(s.folder) if not s.synthetic else None,
                "synthetic": s.synthetic,
                "gates": s.gates,
            }
            for s in run.sets
        ]
        model = onnx_model(baseline_path)
        if settings.distill_from:
            model = distill_step(run, baseline_path)
        if settings.prune is not None:
            model = prune_step(run, model)
        reference = model  # the int8 gate compares with the model before quantisation-aware fine-tuning
        if settings.qat_steps:
            model = qat_step(run, model)
        if settings.int8 and settings.engine != "openvino":
            model = int8_onnx_step(run, model, reference)
        if settings.fp16 and settings.engine == "onnxruntime":
            model = fp16_onnx_step(run, model)
        if settings.engine == "openvino":
            model = openvino_step(run, model, reference)
        elif settings.engine == "tensorrt":
            model = tensorrt_step(run, model)
    except AccuracyGateRefused as exc:
        card.update(
            status="refused",
            reason=str(exc),
            steps=run.steps + [_refused_step(exc)],
            step_names=[s["name"] for s in run.steps],
        )
        with atomic_output_dir(out, overwrite=settings.overwrite) as tmp:
            card["outputs"] = {k: str(out / v.name) for k, v in write_card(card, tmp).items()}
        shutil.rmtree(work, ignore_errors=True)
        raise
    except KeyboardInterrupt as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise Interrupted(f"stopped before the end; {out} was not written") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        with atomic_output_dir(out, overwrite=settings.overwrite) as tmp:
            final = _publish(model, run, tmp)
            if (work / "steps").is_dir():
                shutil.copytree(work / "steps", tmp / "steps")
            card.update(measure(run, onnx_model(baseline_path), final))
            card.update(status="ok", steps=run.steps, step_names=[s["name"] for s in run.steps])
            card["output"].update(
                model=str(out / final.path.name),
                files=[str(out / f.name) for f in final.files],
                format=final.kind,
                size_bytes=final.size_bytes,
            )
            card["outputs"] = {k: str(out / v.name) for k, v in write_card(card, tmp).items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return card


def _refused_step(exc: AccuracyGateRefused) -> dict:
    return {"name": "int8", "status": "refused", "reason": str(exc), "gate": exc.attempts, "sensitivity": exc.ranking}


def settings_from_cli(**values) -> OptimizeSettings:
    """Build the settings from CLI values; pydantic's complaints become one-line EdgeOCRErrors."""
    try:
        return OptimizeSettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise EdgeOCRError(f"--{where.replace('_', '-')}: {first['msg']}") from None
