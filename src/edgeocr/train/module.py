"""The LightningModule that trains any recogniser of :mod:`edgeocr.models.factory` with CTC.

The network itself stays a plain ``nn.Module`` (``self.model``) so that export and inference
never see Lightning. Validation decodes greedily, as the runtime's default decoder does, and
scores the reads with the definitions of :mod:`edgeocr.bench.metrics`: character accuracy
= max(0, 1 - total edit distance / total ground-truth characters) and exact match. The totals
are summed over the whole validation set (and over all processes under DDP) before dividing,
so the figures do not depend on batch size or device count.
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

from edgeocr.bench.metrics import character_accuracy
from edgeocr.core.ctc import decode_batch
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.datasets import LineBatch
from edgeocr.models.factory import build_from_config

VAL_CHAR_ACC = "val_char_acc"
VAL_EXACT = "val_exact"
VAL_LOSS = "val_loss"
TRAIN_LOSS = "train_loss"


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


class RecognizerModule(L.LightningModule):
    """CTC training of a recogniser built from a :class:`RecognizerConfig` (given as a dict).

    Hyperparameters are saved in every checkpoint, so ``RecognizerModule.load_from_checkpoint``
    rebuilds the same network. ``skipped`` counts, per reason, the samples the collator dropped
    from the batches this process saw.
    """

    def __init__(self, recognizer: dict[str, Any], lr: float = 1e-3, weight_decay: float = 0.05,
                 warmup_fraction: float = 0.05, final_lr_fraction: float = 0.01, width_chunks: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.recognizer_config = RecognizerConfig(**recognizer)
        self.charset = self.recognizer_config.charset_obj
        self.model = build_from_config(self.recognizer_config)
        self.ctc_loss = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
        self.skipped: Counter[str] = Counter()
        # edit distance, ground-truth characters, exact reads, lines
        self._val_totals = torch.zeros(4, dtype=torch.int64)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """CTC logits ``[N, T, C]`` of images ``[N, 1, H, W]``."""
        return self.model(images)

    def _log_probs_and_loss(self, batch: LineBatch) -> tuple[torch.Tensor, torch.Tensor]:
        # Softmax and CTC in float32 even under mixed precision: CTC sums many small probabilities.
        log_probs = self.model(batch.images).float().log_softmax(-1)
        loss = self.ctc_loss(log_probs.transpose(0, 1), batch.targets, batch.input_lengths, batch.target_lengths)
        return log_probs, loss

    def _chunked_loss(self, batch: LineBatch) -> torch.Tensor:
        """The batch's mean CTC loss, computed on width-sorted chunks each cut to its own widest line.

        A batch is padded to its widest line, and one 40-character code makes every short line
        in it cost as much as the long one. Sorting by width and cutting each chunk's padding
        saves most of that compute (on CPUs it is proportional to width). Frames beyond each
        line's own width are ignored by the loss either way.
        """
        order = torch.argsort(batch.input_lengths)
        starts = torch.cumsum(batch.target_lengths, 0) - batch.target_lengths
        total = batch.images.new_zeros(())
        for chunk in torch.chunk(order, min(self.hparams.width_chunks, len(batch))):
            frames = int(batch.input_lengths[chunk].max())
            images = batch.images[chunk][..., : frames * self.recognizer_config.frame_stride]
            targets = torch.cat([batch.targets[starts[i]: starts[i] + batch.target_lengths[i]] for i in chunk.tolist()])
            log_probs = self.model(images).float().log_softmax(-1)
            loss = self.ctc_loss(log_probs.transpose(0, 1), targets, batch.input_lengths[chunk],
                                 batch.target_lengths[chunk])
            total = total + loss * (len(chunk) / len(batch))  # mean over chunks = mean over the batch
        return total

    def training_step(self, batch: LineBatch, batch_idx: int) -> torch.Tensor:
        self.skipped.update(batch.skipped)
        if len(batch) == 0:
            # Every sample of the batch was bad. A zero loss tied to the weights keeps all DDP
            # processes stepping together (returning None would hang the others).
            return sum(p.sum() for p in self.parameters()) * 0.0
        loss = self._chunked_loss(batch) if self.hparams.width_chunks > 1 else self._log_probs_and_loss(batch)[1]
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
        lines = decode_batch(log_probs.exp().cpu().numpy(), self.charset, decoder="greedy",
                             lengths=batch.input_lengths.tolist(), are_probabilities=True)
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
