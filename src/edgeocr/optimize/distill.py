"""Distil a trained recogniser (the teacher) into a smaller one (the student).

The student trains on synthetic lines rendered on the fly with the CTC loss plus
``kl_weight * T^2 * KL(teacher || student)`` between the two networks' frame posteriors softened by
temperature ``T`` (:func:`edgeocr.train.module.frame_kl`), averaged over each line's real frames.
Frame posteriors carry what CTC alone must discover slowly: where each character sits and how
confusable it is with the others. The teacher is frozen in eval mode and never receives gradients.

Both networks see the very same preprocessed batch, so the student copies the teacher's input
configuration (charset, height, width policy, normalisation). Every CRNN and SVTR variant
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


def _student(
    student: str | Path, teacher_cfg: RecognizerConfig, seed: int
) -> tuple[RecognizerConfig, nn.Module, str, list[Path]]:
    """(configuration, network, description, source files) of the student."""
    if isinstance(student, str) and student in available_architectures():
        # Same input configuration as the teacher; the frame stride is the architecture's own.
        stride = default_config(student).frame_stride
        cfg = RecognizerConfig(**{**teacher_cfg.model_dump(), "arch": student, "frame_stride": stride})
        L.seed_everything(seed, workers=False, verbose=False)  # the same initial weights in every run
        return cfg, build_from_config(cfg), f"{student} (from scratch)", []
    try:
        onnx, weights = resolve_trainable_model(student, "student")
    except ModelError as exc:
        raise ModelError(
            f"student {student!r}: not an architecture ({', '.join(available_architectures())}) "
            f"nor a usable model: {exc}"
        ) from None
    cfg, network = load_network(weights)
    different = [f for f in INPUT_FIELDS if getattr(cfg, f) != getattr(teacher_cfg, f)]
    if different:
        raise ModelError(
            f"the student {onnx} and the teacher prepare lines differently ({', '.join(different)}): "
            "distillation feeds both the same batch"
        )
    return cfg, network, str(onnx), _model_files(onnx)


def _frames_note(student_cfg: RecognizerConfig, teacher_cfg: RecognizerConfig) -> str:
    if student_cfg.frame_stride == teacher_cfg.frame_stride:
        return f"one to one: both networks give one frame per {student_cfg.frame_stride} px"
    return (
        f"teacher posteriors interpolated from one frame per {teacher_cfg.frame_stride} px to the student's "
        f"one per {student_cfg.frame_stride} px"
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
    lr: float = 1e-3,
    val_lines: int = 500,
    workers: int = 1,
    width_chunks: int = 4,
    overwrite: bool = False,
    progress: bool = False,
) -> DistillResult:
    """Train ``student`` (an architecture name, from scratch, or a model with ``.pt`` weights) for ``steps``
    steps of ``batch_size`` synthetic lines, distilled from ``teacher`` (a model with ``.pt`` weights or a
    shipped name), and export it to ``out_dir``.

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
    student_cfg, student_net, student_name, student_files = _student(student, teacher_cfg, seed)
    out = check_output_dir(out_dir, [*_model_files(teacher_onnx), *student_files], overwrite)

    val_set = held_out_lines(student_cfg, settings)
    teacher_score = score_network(teacher_net, teacher_cfg, settings, val_set)
    outcome = train_network(student_net, student_cfg, settings, FrozenTeacher(teacher_net), val_set)
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
