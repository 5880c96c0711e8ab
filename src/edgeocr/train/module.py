"""The LightningModule that trains any recogniser of :mod:`edgeocr.models.factory` with CTC.

The network itself stays a plain ``nn.Module`` (``self.model``) so that export and inference
never see Lightning. Validation decodes greedily, as the runtime's default decoder does, and
scores the reads with the definitions of :mod:`edgeocr.measure.metrics`: character accuracy
= max(0, 1 - total edit distance / total ground-truth characters) and exact match. The totals
are summed over the whole validation set (and over all processes under DDP) before dividing,
so the figures do not depend on batch size or device count.

With a :class:`FrozenTeacher` and ``kl_weight > 0`` the module also distils: the training loss is
CTC + ``kl_weight`` * :func:`frame_kl` (the teacher's softened frame posteriors against the
student's). Validation loss stays plain CTC, so runs with and without a teacher compare directly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from rapidfuzz.distance import Levenshtein
from torch import nn
from torch.nn import functional as F

from edgeocr.core.ctc import decode_batch
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.datasets import LineBatch
from edgeocr.measure.metrics import character_accuracy
from edgeocr.models.factory import build_from_config

VAL_CHAR_ACC = "val_char_acc"
VAL_EXACT = "val_exact"
VAL_LOSS = "val_loss"
TRAIN_LOSS = "train_loss"
TRAIN_CTC = "train_ctc"
TRAIN_KL = "train_kl"


def warmup_cosine(total_steps: int, warmup_fraction: float, final_fraction: float) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warm-up, then cosine decay to ``final_fraction``.

    Steps past ``total_steps`` keep the final factor (a resumed run may be asked for more steps
    than the one that started it planned). A plain function, so the scheduler's state in a
    checkpoint does not freeze the old plan.
    """
    total = max(1, int(total_steps))
    warmup = max(1, int(total * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def adamw_warmup_cosine(module: L.LightningModule) -> dict[str, Any]:
    """AdamW (no weight decay on biases and norm weights, the 1-D parameters) with a per-step
    warm-up + cosine schedule over the run's planned steps, from ``module.hparams`` (lr,
    weight_decay, warmup_fraction, final_lr_fraction)."""
    hparams = module.hparams
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hparams.lr,
    )
    total_steps = module.trainer.estimated_stepping_batches
    total_steps = int(total_steps) if math.isfinite(total_steps) else 100_000
    schedule = warmup_cosine(total_steps, hparams.warmup_fraction, hparams.final_lr_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def gather_skipped(skipped: Counter[str]) -> Counter[str]:
    """Under DDP each process saw its own share of bad samples: the counts of all processes merged."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return skipped
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, dict(skipped))
    merged: Counter[str] = Counter()
    for counts in gathered:
        merged.update(counts or {})
    return merged


class FrozenTeacher:
    """A trained recogniser whose frame posteriors a student learns from (knowledge distillation).

    Held by :class:`RecognizerModule` as a plain attribute, not a submodule: it stays out of the
    student's ``state_dict`` and checkpoints, out of the optimizer, and out of Lightning's
    ``train()``/``eval()`` switching, so it always runs in eval mode with frozen weights.
    """

    def __init__(
        self,
        network: nn.Module,
        input_height: int | None = None,
        width_multiple: int = 1,
        classes: list[int] | None = None,
    ) -> None:
        self.network = network.eval().requires_grad_(False)
        self.input_height = input_height
        self.width_multiple = width_multiple
        # The teacher's output columns that are the student's classes, in the student's order (None: all):
        # a student whose charset is a subset of the teacher's learns the teacher's posterior over it.
        self.classes = None if classes is None else torch.tensor(classes, dtype=torch.long)

    def resized(self, images: torch.Tensor) -> torch.Tensor:
        """The student's batch at the teacher's own input height (``input_height``; None: as it comes), the
        width scaled alike and rounded to the teacher's ``width_multiple``: a teacher trained on 48 px
        lines teaches a 32 px student from the same lines as it reads them itself."""
        height, width = images.shape[-2:]
        if self.input_height is None or self.input_height == height:
            return images
        units = max(1, round(width * self.input_height / height / self.width_multiple))
        size = (self.input_height, units * self.width_multiple)
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=size[0] < height)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``[N, T_teacher, C]`` of the student's batch (resized to the teacher's height),
        over the student's classes; the network follows the images to their device."""
        if next(self.network.parameters()).device != images.device:
            self.network.to(images.device)
        logits = self.network(self.resized(images)).float()
        return logits if self.classes is None else logits[..., self.classes.to(logits.device)]


def frame_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, input_lengths: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over the lines' real frames of KL(teacher || student) between the frame posteriors
    softened by ``temperature``, times its square (keeps the gradient scale independent of it).

    A teacher with another frame count (another width stride) has its softened posteriors
    interpolated linearly along the width to the student's frames. Frames past each line's own
    width (``input_lengths``, the padding) are left out.
    """
    frames = student_logits.shape[1]
    teacher_probs = torch.softmax(teacher_logits / temperature, dim=-1)
    if teacher_probs.shape[1] != frames:
        teacher_probs = F.interpolate(
            teacher_probs.transpose(1, 2), size=frames, mode="linear", align_corners=False
        ).transpose(1, 2)
        teacher_probs = teacher_probs / teacher_probs.sum(-1, keepdim=True)
    student_log_probs = torch.log_softmax(student_logits / temperature, dim=-1)
    per_frame = (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * student_log_probs).sum(-1)
    real = torch.arange(frames, device=per_frame.device)[None, :] < input_lengths.to(per_frame.device)[:, None]
    return (per_frame * real).sum() / real.sum().clamp_min(1) * temperature**2


def frozen_parts(network: nn.Module, stages: int) -> list[nn.Module]:
    """Freeze the first ``stages`` of ``network.stages()`` (no gradients); return them."""
    if stages == 0:
        return []
    if not hasattr(network, "stages"):
        raise ValueError(f"{type(network).__name__} has no stages to freeze; freezing needs an imported architecture")
    parts = list(network.stages())
    if stages > len(parts):
        raise ValueError(f"{type(network).__name__} has {len(parts)} stages, cannot freeze {stages}")
    for part in parts[:stages]:
        part.requires_grad_(False)
    return parts[:stages]


class RecognizerModule(L.LightningModule):
    """CTC training of a recogniser built from a :class:`RecognizerConfig` (given as a dict).

    Hyperparameters are saved in every checkpoint, so ``RecognizerModule.load_from_checkpoint``
    rebuilds the same network. ``skipped`` counts, per reason, the samples the collator dropped
    from the batches this process saw. ``teacher`` (not a hyperparameter: it is not saved in
    checkpoints) with ``kl_weight > 0`` adds the distillation term at ``temperature``.
    """

    def __init__(
        self,
        recognizer: dict[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        final_lr_fraction: float = 0.01,
        width_chunks: int = 1,
        kl_weight: float = 0.0,
        temperature: float = 2.0,
        teacher: FrozenTeacher | None = None,
        frozen_stages: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["teacher"])
        if kl_weight < 0 or temperature <= 0:
            raise ValueError(f"kl_weight must be >= 0 and temperature > 0, got {kl_weight} and {temperature}")
        self.teacher = teacher
        self.recognizer_config = RecognizerConfig(**recognizer)
        self.charset = self.recognizer_config.charset_obj
        self.model = build_from_config(self.recognizer_config)
        self.frozen = frozen_parts(self.model, frozen_stages)
        self.ctc_loss = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
        self.skipped: Counter[str] = Counter()
        # edit distance, ground-truth characters, exact reads, lines
        self._val_totals = torch.zeros(4, dtype=torch.int64)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """CTC logits ``[N, T, C]`` of images ``[N, 1, H, W]``."""
        return self.model(images)

    def train(self, mode: bool = True) -> RecognizerModule:
        super().train(mode)
        for part in getattr(
            self, "frozen", []
        ):  # frozen stages keep their batch-norm statistics and run without dropout
            part.eval()
        return self

    def _losses(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        input_lengths: torch.Tensor,
        target_lengths: torch.Tensor,
        distil: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(log-probabilities, CTC loss, frame KL to the teacher when ``distil`` and there is one, else None)."""
        # Softmax and CTC in float32 even under mixed precision: CTC sums many small probabilities.
        logits = self.model(images).float()
        log_probs = logits.log_softmax(-1)
        ctc = self.ctc_loss(log_probs.transpose(0, 1), targets, input_lengths, target_lengths)
        if not distil or self.teacher is None or self.hparams.kl_weight == 0:
            return log_probs, ctc, None
        kl = frame_kl(logits, self.teacher.logits(images), input_lengths, self.hparams.temperature)
        return log_probs, ctc, kl

    def _log_probs_and_loss(self, batch: LineBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and CTC loss of the batch as one padded batch (no distillation term)."""
        log_probs, ctc, _ = self._losses(
            batch.images, batch.targets, batch.input_lengths, batch.target_lengths, distil=False
        )
        return log_probs, ctc

    def _chunked_losses(self, batch: LineBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's mean CTC loss (and frame KL with a teacher), computed on width-sorted chunks each cut
        to its own widest line.

        A batch is padded to its widest line, and one 40-character code makes every short line
        in it cost as much as the long one. Sorting by width and cutting each chunk's padding
        saves most of that compute (on CPUs it is proportional to width). Frames beyond each
        line's own width are ignored by the loss either way.
        """
        order = torch.argsort(batch.input_lengths)
        starts = torch.cumsum(batch.target_lengths, 0) - batch.target_lengths
        total_ctc = batch.images.new_zeros(())
        total_kl: torch.Tensor | None = None
        for chunk in torch.chunk(order, min(self.hparams.width_chunks, len(batch))):
            frames = int(batch.input_lengths[chunk].max())
            images = batch.images[chunk][..., : frames * self.recognizer_config.frame_stride]
            targets = torch.cat(
                [batch.targets[starts[i] : starts[i] + batch.target_lengths[i]] for i in chunk.tolist()]
            )
            _, ctc, kl = self._losses(
                images, targets, batch.input_lengths[chunk], batch.target_lengths[chunk], distil=True
            )
            total_ctc = total_ctc + ctc * (len(chunk) / len(batch))  # mean over chunks = mean over the batch
            if kl is not None:  # a mean over real frames: weighted by the chunk's frames, it is the batch's
                share = batch.input_lengths[chunk].sum() / batch.input_lengths.sum()
                total_kl = kl * share if total_kl is None else total_kl + kl * share
        return total_ctc, total_kl

    def on_fit_start(self) -> None:
        # Checked here, not in __init__: load_from_checkpoint rebuilds a distilled student without its teacher.
        if self.hparams.kl_weight > 0 and self.teacher is None:
            raise ValueError("distillation (kl_weight > 0) needs a teacher")

    def training_step(self, batch: LineBatch, batch_idx: int) -> torch.Tensor:
        self.skipped.update(batch.skipped)
        if len(batch) == 0:
            # Every sample of the batch was bad. A zero loss tied to the weights keeps all DDP
            # processes stepping together (returning None would hang the others).
            return sum(p.sum() for p in self.parameters()) * 0.0
        if self.hparams.width_chunks > 1:
            ctc, kl = self._chunked_losses(batch)
        else:
            _, ctc, kl = self._losses(
                batch.images, batch.targets, batch.input_lengths, batch.target_lengths, distil=True
            )
        loss = ctc
        if kl is not None:
            loss = ctc + self.hparams.kl_weight * kl
            self.log(TRAIN_CTC, ctc, on_step=True, on_epoch=False, batch_size=len(batch))
            self.log(TRAIN_KL, kl, on_step=True, on_epoch=False, batch_size=len(batch))
        self.log(TRAIN_LOSS, loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(batch))
        if self.skipped:
            self.log("skipped", float(len(self.skipped)), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_totals = torch.zeros(4, dtype=torch.int64)

    def validation_step(self, batch: LineBatch, batch_idx: int) -> None:
        self.skipped.update(batch.skipped)
        if len(batch) == 0:
            return
        log_probs, loss = self._log_probs_and_loss(batch)
        self.log(VAL_LOSS, loss, on_epoch=True, sync_dist=True, batch_size=len(batch))
        lines = decode_batch(
            log_probs.exp().cpu().numpy(),
            self.charset,
            decoder="greedy",
            lengths=batch.input_lengths.tolist(),
            are_probabilities=True,
        )
        distance = chars = exact = 0
        for truth, line in zip(batch.texts, lines, strict=True):
            distance += Levenshtein.distance(truth, line.text)
            chars += len(truth)
            exact += truth == line.text
        self._val_totals += torch.tensor([distance, chars, exact, len(lines)], dtype=torch.int64)

    def on_validation_epoch_end(self) -> None:
        totals = self.trainer.strategy.reduce(self._val_totals.to(self.device), reduce_op="sum")
        distance, chars, exact, lines = (int(v) for v in totals.tolist())
        # Every process holds the same reduced figures; sync_dist averages equal values, which
        # satisfies Lightning's rule for epoch-level logging under DDP.
        self.log(VAL_CHAR_ACC, character_accuracy(distance, chars), prog_bar=True, sync_dist=True)
        self.log(VAL_EXACT, exact / lines if lines else 0.0, prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_warmup_cosine(self)

    def on_train_end(self) -> None:
        self.skipped = gather_skipped(self.skipped)
