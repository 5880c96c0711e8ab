"""Distil a trained recogniser (the teacher) into a smaller one (the student).

The student trains on synthetic lines rendered on the fly with the CTC loss plus
``kl_weight * T^2 * KL(teacher || student)`` between the two networks' frame posteriors softened by
temperature ``T`` (:func:`edgeocr.train.module.frame_kl`), averaged over each line's real frames.
Frame posteriors carry what CTC alone must discover slowly: where each character sits and how
confusable it is with the others. The teacher is frozen in eval mode and never receives gradients.

Both networks see the very same lines, so a student from scratch copies the teacher's input
configuration (charset, width policy, normalisation); a trained student must share it, except for a
charset that may be a subset of the teacher's (the teacher's posterior is then taken over the
student's classes: :func:`teacher_classes`). Its input height may differ (``input_height``: a 32 px
student of a 48 px teacher): the batch is prepared at the student's height, as the student will
read at run time, and resized to the teacher's height for the teacher
(:meth:`~edgeocr.train.module.FrozenTeacher.resized`); the widest line scales alike. Every CRNN and SVTR variant
outputs one frame per 4 input pixels, so the frames line up one to one; a teacher of another
stride would have its posteriors interpolated along the width to the student's frame count
(``stats["frames"]`` says which happened).

With ``kl_weight == 0`` the same code trains the same student on the same lines in the same order
with the same seed and no teacher: the baseline the distilled student is compared with
(``scripts/distill_compare.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from pydantic import ValidationError
from torch import nn

from edgeocr.core.atomic import atomic_output_dir, atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError, ModelError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.core.sidecar import sidecar_path
from edgeocr.models.export import export_onnx
from edgeocr.models.factory import available_architectures, build_from_config, default_config
from edgeocr.models.weights import weights_path
from edgeocr.optimize.networks import check_output_dir, count_macs, load_network, resolve_trainable_model, save_network
from edgeocr.optimize.short_training import ShortTrainingSettings, held_out_lines, score_network, train_network
from edgeocr.train.module import FrozenTeacher

SCRATCH_LR = 1e-3  # a student from scratch: the peak rate of edgeocr train
TRAINED_LR = 2e-4  # a trained student (another height, say): the rate accurate was fine-tuned at
MODEL_FILE = "model.onnx"
STATS_FILE = "distill_stats.json"
# Configuration fields that decide how a line becomes the network's input: teacher and student must agree.
INPUT_FIELDS = ("charset", "input_height", "min_width", "max_width", "width_multiple", "width_policy", "mean", "std")


@dataclass(frozen=True)
class DistillResult:
    """The trained student and its figures (``stats``, also written to ``distill_stats.json`` beside it)."""

    onnx_path: Path
    stats: dict[str, Any]


def _model_files(onnx: Path) -> list[Path]:
    return [onnx, sidecar_path(onnx), weights_path(onnx)]


def _at_height(cfg: RecognizerConfig, input_height: int | None) -> RecognizerConfig:
    """``cfg`` reading lines ``input_height`` px high (None: unchanged), its widest line scaled alike."""
    if input_height is None or input_height == cfg.input_height:
        return cfg
    units = max(1, round(cfg.max_width * input_height / cfg.input_height / cfg.width_multiple))
    try:
        return RecognizerConfig(
            **{**cfg.model_dump(), "input_height": input_height, "max_width": units * cfg.width_multiple}
        )
    except ValidationError as exc:
        raise EdgeOCRError(f"--input-height {input_height}: {exc.errors()[0]['msg']}") from None


def _student(
    student: str | Path, teacher_cfg: RecognizerConfig, seed: int, input_height: int | None = None
) -> tuple[RecognizerConfig, nn.Module, str, list[Path]]:
    """(configuration, network, description, source files) of the student, reading ``input_height`` px lines
    (None: the teacher's height for an architecture, the model's own for a trained student)."""
    if isinstance(student, str) and student in available_architectures():
        # The teacher's input configuration; the frame stride is the architecture's own.
        stride = default_config(student).frame_stride
        cfg = RecognizerConfig(**{**teacher_cfg.model_dump(), "arch": student, "frame_stride": stride})
        cfg = _at_height(cfg, input_height)
        L.seed_everything(seed, workers=False, verbose=False)  # the same initial weights in every run
        return cfg, _build(cfg), f"{student} (from scratch)", []
    try:
        onnx, weights = resolve_trainable_model(student, "student")
    except ModelError as exc:
        raise ModelError(
            f"student {student!r}: not an architecture ({', '.join(available_architectures())}) "
            f"nor a usable model: {exc}"
        ) from None
    cfg, network = load_network(weights)
    if input_height is not None and input_height != cfg.input_height:
        # The same weights read lines of another height: only the height-dependent layers change.
        cfg = _at_height(cfg, input_height)
        resized = _build(cfg)
        try:
            resized.load_state_dict(network.state_dict())
        except RuntimeError as exc:
            raise ModelError(
                f"the student {onnx} cannot read {input_height} px lines with its weights: {exc}"
            ) from None
        network = resized
    different = [
        f
        for f in INPUT_FIELDS
        if f not in ("input_height", "max_width", "charset") and getattr(cfg, f) != getattr(teacher_cfg, f)
    ]
    if not set(cfg.charset) <= set(teacher_cfg.charset):
        different.append(f"charset: {''.join(sorted(set(cfg.charset) - set(teacher_cfg.charset)))!r} not the teacher's")
    if different:
        raise ModelError(
            f"the student {onnx} and the teacher prepare lines differently ({', '.join(different)}): "
            "distillation feeds both the same lines"
        )
    return cfg, network, str(onnx), _model_files(onnx)


def teacher_classes(student_cfg: RecognizerConfig, teacher_cfg: RecognizerConfig) -> list[int] | None:
    """The teacher's output columns for the student's blank and characters, in the student's order (the
    student's charset a subset of the teacher's); None when the two charsets are the same."""
    if student_cfg.charset == teacher_cfg.charset:
        return None
    return [0, *(1 + teacher_cfg.charset.index(c) for c in student_cfg.charset)]


def _build(cfg: RecognizerConfig) -> nn.Module:
    try:
        return build_from_config(cfg)
    except ValueError as exc:  # an architecture that cannot read lines of this height
        raise EdgeOCRError(f"{cfg.arch}: {exc}") from None


def _frames_note(student_cfg: RecognizerConfig, teacher_cfg: RecognizerConfig) -> str:
    # Frames per student-input pixel: the teacher reads the line scaled to its own height.
    teacher_stride = teacher_cfg.frame_stride * student_cfg.input_height / teacher_cfg.input_height
    if teacher_stride == student_cfg.frame_stride:
        return f"one to one: both networks give one frame per {student_cfg.frame_stride} px of the student's input"
    return (
        f"teacher posteriors interpolated from one frame per {teacher_stride:g} px of the student's input to "
        f"the student's one per {student_cfg.frame_stride} px"
    )


def distill(
    student: str | Path,
    teacher: Path,
    out_dir: Path,
    *,
    steps: int,
    batch_size: int = 32,
    seed: int = 0,
    kl_weight: float = 1.0,
    temperature: float = 2.0,
    lr: float | None = None,
    val_lines: int = 500,
    workers: int = 1,
    width_chunks: int = 4,
    overwrite: bool = False,
    progress: bool = False,
    input_height: int | None = None,
) -> DistillResult:
    """Train ``student`` (an architecture name, from scratch, or a model with ``.pt`` weights) for ``steps``
    steps of ``batch_size`` synthetic lines, distilled from ``teacher`` (a model with ``.pt`` weights or a
    shipped name), and export it to ``out_dir``. ``input_height``: the student's line height when it is
    to read lines of another height than the teacher's (a trained student keeps its weights). ``lr``:
    the peak rate (None: ``SCRATCH_LR`` from scratch, the lower ``TRAINED_LR`` for a trained student).

    ``stats``: the settings, parameter and MAC counts of both networks, the loss history (``losses``:
    window means of the total, CTC and KL terms), and ``held_out``: character accuracy, exact match
    and CTC loss of the student (and, for reference, of the teacher) on ``val_lines`` held-out
    synthetic lines (seed + 1000003, never in the training stream).

    Raises :class:`EdgeOCRError` for bad settings, :class:`ModelError` for an unusable teacher or
    student, :class:`OutputError` for an ``out_dir`` that holds a source model or (without
    ``overwrite``) already holds files.
    """
    if steps < 1:
        raise EdgeOCRError(f"distillation needs at least one step, got {steps}")
    if lr is None:
        from_scratch = isinstance(student, str) and student in available_architectures()
        lr = SCRATCH_LR if from_scratch else TRAINED_LR
    try:
        settings = ShortTrainingSettings(
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            lr=lr,
            kl_weight=kl_weight,
            temperature=temperature,
            val_lines=val_lines,
            workers=workers,
            width_chunks=width_chunks,
            progress=progress,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise EdgeOCRError(f"invalid distillation settings: {problems}") from None
    teacher_onnx, teacher_weights = resolve_trainable_model(teacher, "teacher")
    teacher_cfg, teacher_net = load_network(teacher_weights)
    student_cfg, student_net, student_name, student_files = _student(student, teacher_cfg, seed, input_height)
    out = check_output_dir(out_dir, [*_model_files(teacher_onnx), *student_files], overwrite)

    val_set = held_out_lines(student_cfg, settings)
    teacher_score = score_network(teacher_net, teacher_cfg, settings, val_set)
    frozen = FrozenTeacher(
        teacher_net, teacher_cfg.input_height, teacher_cfg.width_multiple, teacher_classes(student_cfg, teacher_cfg)
    )
    outcome = train_network(student_net, student_cfg, settings, frozen, val_set)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        exported = export_onnx(student_net, student_cfg, tmp / MODEL_FILE)
        save_network(student_net, student_cfg, weights_path(exported))
        stats: dict[str, Any] = {
            "student": student_name,
            "student_arch": student_cfg.arch,
            "teacher": str(teacher_onnx),
            "teacher_arch": teacher_cfg.arch,
            "distilled": kl_weight > 0,
            "kl_weight": kl_weight,
            "temperature": temperature,
            "steps": outcome.steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "frames": _frames_note(student_cfg, teacher_cfg),
            "input_height": {"student": student_cfg.input_height, "teacher": teacher_cfg.input_height},
            "student_params": sum(p.numel() for p in student_net.parameters()),
            "teacher_params": sum(p.numel() for p in teacher_net.parameters()),
            "student_macs": count_macs(student_net, student_cfg),
            "teacher_macs": count_macs(teacher_net, teacher_cfg),
            "onnx_bytes": exported.stat().st_size,
            "wall_time_s": outcome.wall_time_s,
            "losses": outcome.losses,
            "held_out": {"student": outcome.held_out, "teacher": teacher_score},
        }
        atomic_write_bytes(tmp / STATS_FILE, (json.dumps(stats, indent=1) + "\n").encode("utf-8"))
    return DistillResult(onnx_path=out / MODEL_FILE, stats=stats)
