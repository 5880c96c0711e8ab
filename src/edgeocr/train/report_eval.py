"""Read labelled crop folders during training, for the record only: ``report_eval.jsonl``.

A model card should say how a run moved on real photos, step by step, without real photos ever
steering it. :class:`ReportEvaluation` reads each folder with the network as it stands (eval
mode, greedy decoding, one crop at a time as ``edgeocr eval`` reads) at the start of fitting and
every N steps, and appends one JSON line per reading. Nothing it computes reaches the loss, the
checkpoint choice (that is ``val_char_acc`` on the synthetic validation set) or the random
streams: it runs under ``torch.no_grad`` and puts the training mode back.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.ctc import greedy_decode
from edgeocr.core.images import read_image
from edgeocr.core.lineimage import prepare_line
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.labels import read_labels
from edgeocr.measure.metrics import accuracy

REPORT_FILE = "report_eval.jsonl"
KEYS = ("char_accuracy", "char_accuracy_relaxed", "exact_match", "exact_match_relaxed")


def _scores(labels: Sequence[str], reads: Sequence[str]) -> dict[str, float]:
    return {k: round(100 * v, 2) for k, v in accuracy(labels, reads).items() if k in KEYS}


class ReportEvaluation(Callback):
    """Every ``every_n_steps`` steps (and before the first), the scores of the network on ``folders``."""

    def __init__(self, folders: Sequence[Path], every_n_steps: int, path: Path, cfg: RecognizerConfig) -> None:
        self.every_n_steps = every_n_steps
        self.path = Path(path)
        self.cfg = cfg
        self.sets: list[tuple[str, list[str], list[str], list[np.ndarray]]] = []
        for folder in folders:
            samples, _ = read_labels(folder, strict=True)
            images = [prepare_line(read_image(s.path), cfg) for s in samples]
            self.sets.append((str(folder), [s.text for s in samples], [s.category for s in samples], images))

    @torch.no_grad()
    def _read(self, network: torch.nn.Module, images: Sequence[np.ndarray], device: torch.device) -> list[str]:
        charset = self.cfg.charset_obj
        reads = []
        for image in images:
            logits = network(torch.from_numpy(image[None]).to(device)).float()
            reads.append(greedy_decode(torch.softmax(logits, -1)[0].cpu().numpy().astype(np.float64), charset).text)
        return reads

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        network = pl_module.model
        was_training = network.training
        network.eval()
        start = time.perf_counter()
        try:
            row: dict[str, Any] = {"step": trainer.global_step, "sets": {}}
            for folder, labels, categories, images in self.sets:
                reads = self._read(network, images, pl_module.device)
                groups: dict[str, list[int]] = defaultdict(list)
                for i, category in enumerate(categories):
                    groups[category].append(i)
                row["sets"][folder] = {
                    "ALL": _scores(labels, reads),
                    **{
                        c: _scores([labels[i] for i in idx], [reads[i] for i in idx])
                        for c, idx in sorted(groups.items())
                    },
                }
        finally:
            network.train(was_training)
            for part in getattr(pl_module, "frozen", []):
                part.eval()
        row["seconds"] = round(time.perf_counter() - start, 1)
        kept = []
        if self.path.is_file():  # a resumed run keeps the readings of the steps before it
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] < trainer.global_step
            ]
        atomic_write_bytes(self.path, ("\n".join([*kept, json.dumps(row)]) + "\n").encode("utf-8"))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._record(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step % self.every_n_steps:
            self._record(trainer, pl_module)


def read_report(path: Path) -> list[dict[str, Any]]:
    """The readings of ``report_eval.jsonl``, in step order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def report_markdown(readings: Sequence[dict[str, Any]]) -> str:
    """A markdown table per folder: strict / relaxed character accuracy per category at each step."""
    blocks = []
    folders = list(dict.fromkeys(folder for r in readings for folder in r["sets"]))
    for folder in folders:
        rows = [r for r in readings if folder in r["sets"]]
        categories = list(rows[0]["sets"][folder])
        lines = [
            f"`{Path(folder).name}` (strict / relaxed character accuracy, %)",
            "",
            "| step | " + " | ".join(categories) + " |",
            "|---" * (len(categories) + 1) + "|",
        ]
        for r in rows:
            cells = [
                f"{r['sets'][folder][c]['char_accuracy']:.1f} / {r['sets'][folder][c]['char_accuracy_relaxed']:.1f}"
                for c in categories
            ]
            lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
