"""Train a text-line detector: :class:`DetectorTrainConfig` says what and how, :func:`run_detector_training` runs it.

The run is recogniser training's (:mod:`edgeocr.train.run`: output directory, checkpoints,
resume with ``resume=True``, ``metrics.json``); ``checkpoints/best.ckpt`` keeps the best
``val_hmean``, and ``model.onnx`` is for :mod:`edgeocr.runtime.detector`.

Training data are synthetic scenes rendered on the fly (new ones each epoch) and/or scene
folders with ``annotations.jsonl``; validation is a scene folder or a fixed held-out set of
synthetic scenes. Validation runs the runtime's own post-processing on the predicted maps and
scores the boxes with :mod:`edgeocr.measure.detection_metrics` (precision, recall and hmean at
IoU 0.5), so ``val_hmean`` is what the exported model scores on that set.

The loss is DB's (Liao et al. 2020), written here: balanced binary cross-entropy with 3:1
hard-negative mining on the probability map, dice on the differentiable binary map
``1 / (1 + exp(-k (P - T)))`` and L1 on the threshold map near the line borders.

Run from a shell with ``edgeocr train-detector`` (or :func:`main` with ``key=value`` arguments).
"""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from pydantic import Field, ValidationError, field_validator, model_validator
from torch.utils.data import DataLoader, Dataset

from edgeocr.core.detection import boxes_from_probability_map
from edgeocr.core.detector_config import DetectorConfig
from edgeocr.core.errors import EdgeOCRError
from edgeocr.data.datasets import Mixed, require_usable
from edgeocr.data.scene_dataset import (
    Augmentation,
    DetectionBatch,
    DetectionSamples,
    SyntheticScenes,
    collate_detection,
    open_scene_dataset,
    render_synthetic_scenes,
)
from edgeocr.measure.detection_metrics import DetectionCounts, count_detections
from edgeocr.models.detector import build_detector, default_detector_config, detector_architectures
from edgeocr.models.detector_export import export_detector_onnx, load_detector_weights, save_detector_weights
from edgeocr.models.pretrained import PRETRAINED
from edgeocr.models.pretrained_detector import load_detector_source
from edgeocr.models.sources import DETECTOR_SOURCES, detector_source_for_arch
from edgeocr.train.module import adamw_warmup_cosine, gather_skipped
from edgeocr.train.run import HELD_OUT_SEED_OFFSET, MODEL_FILE, TRAIN_LOSS, TrainingRun, check_run_state, execute
from edgeocr.train.settings import RunSettings

# Fields that fix the network or the meaning of its output: a run cannot resume with other values.
MODEL_FIELDS = ("arch", "shrink_ratio")

VAL_HMEAN = "val_hmean"
VAL_PRECISION = "val_precision"
VAL_RECALL = "val_recall"
VAL_LOSS = "val_loss"

# DB loss: L = L_prob + ALPHA * L_binary + BETA * L_thresh, binarisation steepness K.
ALPHA = 1.0
BETA = 10.0
K = 50.0
OHEM_RATIO = 3.0  # hard negatives per positive pixel
MIN_HARD_NEGATIVES = 4096  # per batch, so that scenes without text still teach "no text here"


class DetectorTrainConfig(RunSettings):
    """Everything a detector training run needs; saved as ``train_config.json`` in the output directory."""

    arch: str = Field(
        default="db_s",
        description="Detector architecture from edgeocr.models.detector: db_s (ours), ppocrv6_det_small and "
        "ppocrv4_det_mobile (PP-OCR's, imported), db_tiny (tests).",
    )
    input_size: int = Field(
        default=640,
        ge=64,
        description="Side of the square training crops (a multiple of 32); validation images and the exported "
        "model's max_side are resized to this long side.",
    )
    shrink_ratio: float = Field(default=0.4, gt=0, lt=1, description="DB shrink ratio r of the training targets.")
    scale_range: tuple[float, float] = Field(
        default=(0.5, 1.5),
        description="Training scenes are resized so that their long side is input_size times a factor drawn from "
        "this range, then cropped (or padded) to input_size x input_size.",
    )
    data: tuple[Path, ...] = Field(default=(), description="Training scene folders with annotations.jsonl.")
    val: Path | None = Field(
        default=None,
        description="Validation scene folder. None: val_scenes held-out synthetic scenes (seed synthetic_seed + "
        "1000003), rendered once and kept in memory.",
    )
    scenes_per_epoch: int = Field(
        default=2000, ge=0, description="Synthetic scenes rendered on the fly per epoch (new ones each epoch); 0: none."
    )
    val_scenes: int = Field(default=200, ge=1, description="Size of the held-out synthetic validation set (no val).")
    epochs: int = Field(default=50, ge=1, description="Maximum number of epochs.")
    batch_size: int = Field(default=16, ge=1, description="Scenes per batch and device.")
    lr: float = Field(default=2e-3, gt=0, description="Peak learning rate of AdamW (linear warm-up, cosine decay).")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay (not on biases and norms).")
    warmup_fraction: float = Field(
        default=0.03, ge=0, lt=1, description="Share of the planned steps spent warming the learning rate up."
    )
    early_stopping_patience: int | None = Field(
        default=10, ge=1, description="Stop after this many validations without a better val_hmean; None: never."
    )
    resume: bool = Field(
        default=False,
        description="Continue the run in out from checkpoints/last.ckpt (weights, optimizer, schedule, step); "
        "without it, an out that already holds a run is refused.",
    )
    init: str | None = Field(
        default=None,
        description="Starting weights: 'pretrained' (an imported architecture's source weights, e.g. PP-OCRv6's "
        "detector for ppocrv6_det_small), or a detector weights file (model.pt or .ckpt) of the same "
        "architecture; None: random.",
    )
    teacher: str | None = Field(
        default=None,
        description="A frozen detector whose probability map the network is also trained toward (distillation): a "
        "pretrained detector's name (ppocrv6-det, ppocrv4-det) or a detector weights file (model.pt or .ckpt) of any "
        "architecture. Needs distill_weight > 0.",
    )
    freeze_backbone: bool = Field(
        default=False,
        description="Train the neck and heads only; the backbone keeps its starting weights (about 3x faster "
        "steps on a CPU for PP-OCR's detector, and what it learned from real images stays).",
    )
    distill_weight: float = Field(
        default=0.0,
        ge=0.0,
        description="Weight of the distillation term: binary cross-entropy of the network's probability logits "
        "against the teacher's probability map, over every pixel. 0: plain DB training.",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in detector_architectures():
            known = ", ".join(detector_architectures())
            raise ValueError(f"unknown detector architecture {value!r}; choose one of {known}")
        return value

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {value}")
        return value

    @field_validator("scale_range")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {value}")
        return value

    @model_validator(mode="after")
    def _has_training_data(self) -> DetectorTrainConfig:
        if not self.data and self.scenes_per_epoch == 0:
            raise ValueError("nothing to train on: give scene folders (data) or scenes_per_epoch > 0")
        if (self.teacher is None) != (self.distill_weight == 0):
            raise ValueError("a teacher needs distill_weight > 0, and distill_weight > 0 needs a teacher")
        if self.init == PRETRAINED and detector_source_for_arch(self.arch) is None:
            raise ValueError(
                f"init 'pretrained': {self.arch} has no pretrained source (imported architectures: "
                f"{', '.join(s.arch for s in DETECTOR_SOURCES.values())})"
            )
        return self

    def detector_config(self) -> DetectorConfig:
        """The configuration of the detector this run trains and exports."""
        return default_detector_config(self.arch, max_side=self.input_size, shrink_ratio=self.shrink_ratio)


# --- the loss -----------------------------------------------------------------------------------


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE over all positive pixels and the hardest negatives (OHEM_RATIO per positive, at least
    MIN_HARD_NEGATIVES), averaged over the pixels used."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    positive = target * mask
    negative = (1.0 - target) * mask
    n_pos = int(positive.sum().item())
    n_neg = min(int(negative.sum().item()), max(int(n_pos * OHEM_RATIO), MIN_HARD_NEGATIVES))
    total = (loss * positive).sum()
    if n_neg > 0:
        total = total + torch.topk((loss * negative).flatten(), n_neg, sorted=False).values.sum()
    return total / (n_pos + n_neg + 1e-6)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - 2 |P * G| / (|P| + |G|) over the masked pixels."""
    intersection = (pred * target * mask).sum()
    union = (pred * mask).sum() + (target * mask).sum() + 1e-6
    return 1.0 - 2.0 * intersection / union


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the masked pixels (0 when the mask is empty)."""
    return ((pred - target).abs() * mask).sum() / (mask.sum() + 1e-6)


def db_loss(
    logits: torch.Tensor, thresh: torch.Tensor, batch: DetectionBatch
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DB's loss and its parts, in float32 whatever the training precision."""
    logits, thresh = logits.float(), thresh.float()
    prob = torch.sigmoid(logits)
    binary = torch.sigmoid(K * (prob - thresh))
    parts = {
        "prob": balanced_bce(logits, batch.prob, batch.prob_mask),
        "binary": dice_loss(binary, batch.prob, batch.prob_mask),
        "thresh": masked_l1(thresh, batch.thresh, batch.thresh_mask),
    }
    return parts["prob"] + ALPHA * parts["binary"] + BETA * parts["thresh"], parts


def distillation_loss(logits: torch.Tensor, teacher_prob: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the probability logits against the teacher's probabilities, every pixel."""
    return F.binary_cross_entropy_with_logits(logits.float(), teacher_prob.float())


class Teacher:
    """A frozen detector and the change of normalisation from the student's inputs to its own.

    Kept outside the Lightning module's registered children, so that checkpoints hold the student only.
    """

    def __init__(self, network: torch.nn.Module, config: DetectorConfig, student: DetectorConfig) -> None:
        self.network = network.eval().requires_grad_(False)
        # student input x = (p - m_s) / s_s  ->  teacher input (p - m_t) / s_t = x * s_s / s_t + (m_s - m_t) / s_t
        s_s, m_s = torch.tensor(student.std), torch.tensor(student.mean)
        s_t, m_t = torch.tensor(config.std), torch.tensor(config.mean)
        self.scale = (s_s / s_t).view(1, 3, 1, 1)
        self.shift = ((m_s - m_t) / s_t).view(1, 3, 1, 1)

    def to(self, device: torch.device) -> Teacher:
        self.network.to(device)
        self.scale, self.shift = self.scale.to(device), self.shift.to(device)
        return self

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images.float() * self.scale + self.shift)


def load_teacher(spec: str, student: DetectorConfig) -> Teacher:
    """The teacher named by ``spec``: a pretrained detector's name, or a detector weights file."""
    if spec in DETECTOR_SOURCES:
        network = load_detector_source(spec)
        config = default_detector_config(DETECTOR_SOURCES[spec].arch)
    else:
        config, state = load_detector_weights(spec)
        network = build_detector(config)
        network.load_state_dict(state)
    return Teacher(network, config, student)


def initial_weights(spec: str, arch: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` that ``init`` names for a network of ``arch``."""
    if spec == PRETRAINED:
        source = detector_source_for_arch(arch)
        assert source is not None  # checked by DetectorTrainConfig
        return load_detector_source(source.name).state_dict()
    config, state = load_detector_weights(spec)
    if config.arch != arch:
        raise EdgeOCRError(f"init {spec} holds a {config.arch} detector, not the {arch} this run trains")
    return state


# --- the Lightning module -------------------------------------------------------------------------


class DetectorModule(L.LightningModule):
    """DB training of a detector built from a :class:`DetectorConfig` (given as a dict, saved in checkpoints)."""

    def __init__(
        self,
        detector: dict[str, Any],
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.03,
        final_lr_fraction: float = 0.01,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.detector_config = DetectorConfig(**detector)
        self.model = build_detector(self.detector_config)
        self.skipped: Counter[str] = Counter()
        self._val_counts = DetectionCounts()
        self.teacher: Teacher | None = None  # set by the run (not a registered child: not checkpointed)
        self.distill_weight = 0.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def training_step(self, batch: DetectionBatch, batch_idx: int) -> torch.Tensor:
        self.skipped.update(batch.skipped)
        if len(batch) == 0:
            # Keeps DDP processes stepping together (returning None would hang the others).
            return sum(p.sum() for p in self.parameters()) * 0.0
        logits, thresh = self.model.forward_train(batch.images)
        loss, parts = db_loss(logits, thresh, batch)
        if self.teacher is not None:
            parts["distill"] = distillation_loss(logits, self.teacher.probabilities(batch.images))
            loss = loss + self.distill_weight * parts["distill"]
        self.log(TRAIN_LOSS, loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(batch))
        for name, value in parts.items():
            self.log(f"train_loss_{name}", value, on_step=True, on_epoch=False, batch_size=len(batch))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = DetectionCounts()

    def validation_step(self, batch: DetectionBatch, batch_idx: int) -> None:
        self.skipped.update(batch.skipped)
        if len(batch) == 0:
            return
        logits, thresh = self.model.forward_train(batch.images)
        loss, _ = db_loss(logits, thresh, batch)
        self.log(VAL_LOSS, loss, on_epoch=True, sync_dist=True, batch_size=len(batch))
        probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        for prob, polys, ignore, exhaustive, (h, w) in zip(
            probs, batch.polys, batch.ignore, batch.exhaustive, batch.content, strict=True
        ):
            boxes = [quad for quad, _ in boxes_from_probability_map(prob[:h, :w], self.detector_config)]
            self._val_counts += count_detections(boxes, polys, ignore, exhaustive)

    def on_validation_epoch_end(self) -> None:
        counts = torch.tensor([self._val_counts.tp, self._val_counts.fp, self._val_counts.fn], dtype=torch.int64)
        tp, fp, fn = (int(v) for v in self.trainer.strategy.reduce(counts.to(self.device), reduce_op="sum").tolist())
        total = DetectionCounts(tp=tp, fp=fp, fn=fn)
        self.log(VAL_PRECISION, total.precision, sync_dist=True)
        self.log(VAL_RECALL, total.recall, sync_dist=True)
        self.log(VAL_HMEAN, total.hmean, prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_warmup_cosine(self)

    def on_train_end(self) -> None:
        self.skipped = gather_skipped(self.skipped)


# --- the run ------------------------------------------------------------------------------------


def _build_scenes(cfg: DetectorTrainConfig) -> Dataset:
    parts: list[Dataset] = [open_scene_dataset(path) for path in cfg.data]
    for path, part in zip(cfg.data, parts, strict=True):
        require_usable(part, str(path))  # DataError (exit 2) when no scene image loads, before any training
    if cfg.scenes_per_epoch:
        parts.append(
            SyntheticScenes(
                cfg.scenes_per_epoch, cfg.synthetic_seed, [str(t) for t in cfg.templates], [str(f) for f in cfg.fonts]
            )
        )
    if len(parts) == 1:
        return parts[0]
    sizes = [float(len(part)) for part in parts]  # type: ignore[arg-type]
    return Mixed(parts, sizes, seed=cfg.synthetic_seed)


def _build_val_scenes(cfg: DetectorTrainConfig) -> Dataset:
    if cfg.val is not None:
        val_scenes = open_scene_dataset(cfg.val)
        require_usable(val_scenes, str(cfg.val))
        return val_scenes
    seed = cfg.synthetic_seed + HELD_OUT_SEED_OFFSET
    rank_zero_info(f"rendering the held-out synthetic validation scenes ({cfg.val_scenes}, seed {seed})")
    return render_synthetic_scenes(cfg.val_scenes, seed, [str(t) for t in cfg.templates], [str(f) for f in cfg.fonts])


class _Run(TrainingRun):
    """The pieces of one invocation, built from a DetectorTrainConfig (see :func:`run_detector_training`)."""

    cfg: DetectorTrainConfig
    resume_word = "resume=True"

    def __init__(self, cfg: DetectorTrainConfig) -> None:
        super().__init__(cfg)
        self.detector_cfg = cfg.detector_config()
        self.train_set = DetectionSamples(
            _build_scenes(cfg),
            self.detector_cfg,
            cfg.input_size,
            "train",
            seed=cfg.seed,
            augmentation=Augmentation(scale=cfg.scale_range),
        )
        self.val_set = DetectionSamples(_build_val_scenes(cfg), self.detector_cfg, cfg.input_size, "eval")
        self.train_loader = self._loader(self.train_set, shuffle=True, pin=self.pin_memory)
        self.val_loader = self._loader(self.val_set, shuffle=False, pin=self.pin_memory)
        self.module = DetectorModule(
            self.detector_cfg.model_dump(mode="json"),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_fraction=cfg.warmup_fraction,
        )
        if cfg.init is not None and not cfg.resume:  # a resumed run takes its weights from the checkpoint
            self.module.model.load_state_dict(initial_weights(cfg.init, cfg.arch))
        if cfg.freeze_backbone:  # no gradients are computed through it, not just none applied
            self.module.model.backbone.requires_grad_(False)
        if cfg.teacher is not None:
            self.module.teacher = load_teacher(cfg.teacher, self.detector_cfg)
            self.module.distill_weight = cfg.distill_weight
        self._set_up(monitor=VAL_HMEAN)

    def _loader(self, dataset: DetectionSamples, shuffle: bool, pin: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=self.cfg.workers,
            collate_fn=collate_detection,
            pin_memory=pin,
            # Not persistent: each epoch's workers must fork a dataset that knows the new epoch.
            persistent_workers=False,
        )

    def export(self) -> Path:
        network = copy.deepcopy(self.module.model).cpu().float()
        source = detector_source_for_arch(self.cfg.arch) if self.cfg.init is not None else None
        derived = source.derived_from() if source is not None else None
        path = export_detector_onnx(network, self.detector_cfg, self.out / MODEL_FILE, derived_from=derived)
        save_detector_weights(network, self.detector_cfg, path.with_suffix(".pt"))
        return path

    def run_metrics(self, final: dict[str, float | None]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        validation = {key: final.get(key) for key in (VAL_HMEAN, VAL_PRECISION, VAL_RECALL, VAL_LOSS)}
        sizes = {"train_scenes_per_epoch": len(self.train_set), "val_scenes": len(self.val_set)}
        return (
            validation,
            sizes,
            list(dict.fromkeys([*self.train_set.skipped, *self.val_set.skipped, *self.module.skipped])),
        )


def run_detector_training(cfg: DetectorTrainConfig) -> Path:
    """Train, keep checkpoints, export the best model; return the path of ``out/model.onnx``.

    With ``cfg.resume`` the run continues from ``out/checkpoints/last.ckpt`` (weights,
    optimizer, schedule, epoch and step, early-stopping and best-checkpoint state); without it
    an output directory that already holds a run is refused. OpenCV is limited to one thread
    while DataLoader workers are used (they are forked from this process; see run_training).
    """
    check_run_state(cfg, cfg.resume, MODEL_FIELDS, ("resume=True", "out"))
    return execute(cfg, lambda: _Run(cfg), cfg.resume)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare string such as a path


def main(argv: list[str] | None = None) -> int:
    """``main([config.json, key=value, ...])``: build a
    :class:`DetectorTrainConfig` (values are JSON, or plain strings for paths) and run it."""
    args = sys.argv[1:] if argv is None else argv
    values: dict[str, Any] = {}
    for arg in args:
        if "=" not in arg:
            values.update(json.loads(Path(arg).read_text(encoding="utf-8")))
            continue
        key, text = arg.split("=", 1)
        values[key.strip()] = _parse_value(text)
    try:
        cfg = DetectorTrainConfig.model_validate(values)
    except ValidationError as exc:
        print(f"error: invalid detector training settings: {exc}", file=sys.stderr)
        return 2
    try:
        path = run_detector_training(cfg)
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
