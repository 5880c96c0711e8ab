#!/usr/bin/env python3
"""Call 2: a training burst of a shipped recogniser on the lent GPU, with a checkpoint back every minute.

    python3 scripts/gpu/call2_train_burst.py --device cuda [--budget-s 240] [--out DIR]     # the lent machine
    .venv/bin/python scripts/gpu/call2_train_burst.py --device cpu --smoke --out /tmp/b      # the test suite's run

What it does, in order (everything it writes to ``--out`` fits the call's return: 7 files, each under
16 MiB):

1. scores the starting model (``--model``, default ``accurate``: its ONNX carries its trainable
   weights) with ONNX Runtime on the synthetic test lines and the realdev crops: the "before" figures;
2. renders the validation lines (the accurate run's: 2,000 lines, seed 1,000,003) unless ``--val``;
3. trains with ``edgeocr train`` (the accurate run's recipe: ``--init`` the shipped ONNX,
   ``--distill-weight 1`` toward the frozen start, ``--freeze-stages 3``, AdamW lr 2e-4 with warm-up and
   cosine decay, synthetic lines rendered on the fly) in two invocations: a probe of ``--probe-steps``
   steps that measures the step rate, then ``--resume --max-steps N`` with N planned to end inside
   ``--budget-s`` (the schedule is planned again over N, so the burst ends annealed). A run still going at
   the deadline is stopped with SIGINT and exported from its last checkpoint;
4. every ``--copy-every`` seconds (and at the end) turns ``checkpoints/last.ckpt`` (33 MiB for accurate:
   weights plus AdamW state, over the 16 MiB a returned file may have) into ``burst-weights.pt``
   (float16 weights and configuration, about 6 MiB: ``edgeocr export --weights`` and ``--init`` read it)
   and rewrites ``report.json`` with the step reached, so a call cut off keeps its last minute;
5. scores the exported model like the start ("after") and writes ``report.json`` / ``report.md`` (machine,
   steps, wall time, steps/s, before/after) and ``model.onnx`` / ``model.json``.

``--device cuda`` without a CUDA device exits 2 with "no CUDA device"; it never trains on the CPU instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpulib  # noqa: E402

gpulib.bootstrap()

FORMAT = "edgeocr-gpu-burst-1"
VAL_SEED = 1_000_003  # the accurate run's validation set (seed 0 + the held-out offset)
VAL_LINES = 2000
TEST_LINES = 512
RESERVE_S = 45  # kept at the end: final validation, export, the "after" scoring, the report
MAX_RETURNED_BYTES = 16 * 2**20
SMOKE_VAL_LINES = 2
FILES = ("report.json", "report.md", "burst-weights.pt", "model.onnx", "model.json", "train-log.txt")


def first_lines(folder: Path, count: int, out: Path) -> Path:
    """A labels.tsv folder with the first ``count`` lines of ``folder`` (images copied)."""
    from edgeocr.data.labels import read_labels

    samples, _ = read_labels(folder, strict=True)
    rows = []
    for sample in samples[:count]:
        target = out / sample.file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.path, target)
        rows.append(f"{sample.file}\t{sample.text}")
    (out / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def charset_name(charset: str) -> str:
    from edgeocr.core.charset import CHARSETS

    for name, chars in CHARSETS.items():
        if chars == charset:
            return name
    raise SystemExit(f"error: the model's charset is none of {', '.join(CHARSETS)}; edgeocr train cannot rebuild it")


def score(model: Path, sets: dict[str, Path], threads: int) -> dict:
    """ONNX Runtime CPU reads of every set (strict / relaxed char accuracy and exact match, %)."""
    from edgeocr.data.labels import read_labels
    from edgeocr.measure.evaluate import evaluate_samples
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

    rec = OnnxRecognizer(model, EngineConfig(intra_op_threads=threads))

    def read(image: Any) -> tuple[str, float]:
        line = rec.recognize([image])[0]
        return line.text, line.confidence

    out = {}
    for name, folder in sets.items():
        samples, _ = read_labels(folder, strict=True)
        result = evaluate_samples(read, samples)
        out[name] = {
            "n": result["n"],
            **{
                k: round(100 * result[k], 2)
                for k in ("char_accuracy", "char_accuracy_relaxed", "exact_match", "exact_match_relaxed")
            },
        }
    return out


class Copier:
    """Turns ``last.ckpt`` into ``burst-weights.pt`` (float16, weights only) every ``every_s`` and on demand."""

    def __init__(self, checkpoint: Path, out: Path, every_s: float, on_copy: Any) -> None:
        self.checkpoint, self.out, self.every_s, self.on_copy = checkpoint, out, every_s, on_copy
        self._seen: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.copies: list[dict] = []
        self.checkpoint_bytes: int | None = None
        self.error: str | None = None

    def start(self) -> Copier:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.copy()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.copy()

    def copy(self) -> dict | None:
        import torch

        from edgeocr.models.weights import FORMAT as WEIGHTS_FORMAT
        from edgeocr.models.weights import LIGHTNING_PREFIX

        with self._lock:
            try:
                stamp = self.checkpoint.stat().st_mtime
            except FileNotFoundError:
                return None
            if stamp == self._seen:
                return None
            try:
                raw = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
                self.checkpoint_bytes = self.checkpoint.stat().st_size
                state = {
                    k[len(LIGHTNING_PREFIX) :]: (v.half() if v.is_floating_point() else v)
                    for k, v in raw["state_dict"].items()
                    if k.startswith(LIGHTNING_PREFIX)
                }
                payload = {
                    "format": WEIGHTS_FORMAT,
                    "config": raw["hyper_parameters"]["recognizer"],
                    "state_dict": state,
                    "global_step": int(raw.get("global_step", 0)),
                }
                buffer = io.BytesIO()
                torch.save(payload, buffer)
                target = self.out / "burst-weights.pt"
                tmp = target.with_name(".burst-weights.pt.tmp")
                tmp.write_bytes(buffer.getvalue())
                os.replace(tmp, target)
            except Exception as exc:  # a checkpoint being replaced mid-read: the next tick takes it
                self.error = f"{type(exc).__name__}: {exc}"
                return None
            self._seen = stamp
            record = {
                "step": payload["global_step"],
                "at_s": round(time.monotonic() - START, 1),
                "checkpoint_bytes": self.checkpoint_bytes,
                "weights_bytes": target.stat().st_size,
            }
            self.copies.append(record)
        self.on_copy(record)
        return record


START = time.monotonic()


TRAIN = (
    "import json, sys\n"
    "from edgeocr.train.command import train_command\n"
    "print('model:', train_command(**json.loads(sys.argv[1])), flush=True)\n"
)


def train_settings(
    args: argparse.Namespace, model: Path, sidecar: Any, run_dir: Path, val: Path, reports: list[Path]
) -> dict:
    """The keyword arguments of :func:`edgeocr.train.command.train_command` (what ``edgeocr train`` calls;
    called directly so that the lent machine's own typer version does not matter): the accurate run's
    recipe (docs/models/accurate.md) from the shipped model's own weights."""
    from edgeocr.models.factory import is_imported

    imported = is_imported(sidecar.config.arch)
    return {
        "arch": sidecar.config.arch,
        "charset": charset_name(sidecar.config.charset),
        "init": str(model if imported else model.with_suffix(".pt")),
        "distill_weight": args.distill_weight,
        "distill_temperature": 2.0,
        "freeze_stages": args.freeze_stages if args.freeze_stages is not None else (3 if imported else 0),
        "data": [],
        "synthetic": args.synthetic,
        "epochs": 1000,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_fraction": 0.05,
        "workers": args.workers,
        "precision": "auto",
        "accelerator": "gpu" if args.device == "cuda" else "cpu",
        "devices": 1,
        "early_stopping_patience": 1000,
        "seed": 0,
        "val": str(val),
        "out": str(run_dir),
        "resume": False,
        "progress": False,
        "report_data": [str(p) for p in reports],
    }


def run_phase(settings: dict, log: Path, stop_at: float | None, env: dict) -> dict:
    """One training invocation in a child process; SIGINT (Lightning's graceful stop) when ``stop_at`` passes."""
    begin = time.monotonic()
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"\n$ train_command {json.dumps(settings)}\n")
        sink.flush()
        cmd = [sys.executable, "-c", TRAIN, json.dumps(settings)]
        process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        interrupted = False
        while process.poll() is None:
            if stop_at is not None and time.monotonic() > stop_at and not interrupted:
                process.send_signal(signal.SIGINT)
                interrupted = True
                stop_at = time.monotonic() + 30  # then SIGKILL if it does not stop
            elif interrupted and time.monotonic() > stop_at:
                process.kill()
            time.sleep(0.5)
    return {"returncode": process.returncode, "interrupted": interrupted, "wall_s": round(time.monotonic() - begin, 1)}


def read_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def markdown(report: dict) -> str:
    m = report["machine"]
    where = m["gpu_label"] or m["cpu_label"]
    lines = [f"# Training burst: {report['model']} on {where}", ""]
    if report.get("smoke"):
        lines += ["**Smoke run: tiny counts, not a measurement.**", ""]
    t = report.get("training", {})
    lines += [
        f"- status: {report['status']}",
        f"- steps this burst: {t.get('steps')} (probe {t.get('probe_steps')}, planned {t.get('planned_steps')}), "
        f"batch {report['settings']['batch_size']}, lr {report['settings']['lr']}, precision {t.get('precision')}",
        f"- training wall time {t.get('wall_s')} s, {t.get('steps_per_s')} steps/s; call {report.get('elapsed_s')} s",
        f"- validation (synthetic, {report['data']['val']['n']} lines): {t.get('val')}",
        f"- checkpoint: last.ckpt {report.get('checkpoint_bytes')} bytes; returned as burst-weights.pt "
        f"({report.get('weights_bytes')} bytes, float16 weights only)",
        "",
        "| set | before strict / relaxed / exact(relaxed) % | after |",
        "|---|---|---|",
    ]
    for name, before in report.get("before", {}).items():
        after = report.get("after", {}).get(name)

        def cell(x: dict | None) -> str:
            if not x:
                return ""
            return f"{x['char_accuracy']:.1f} / {x['char_accuracy_relaxed']:.1f} / {x['exact_match_relaxed']:.0f}"

        lines.append(f"| {name} ({before['n']}) | {cell(before)} | {cell(after)} |")
    if report.get("errors"):
        lines += ["", "Errors:", *[f"- {e}" for e in report["errors"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), required=True)
    parser.add_argument("--out", type=Path, help="what comes back (default $OUT, else build/gpu/call2)")
    parser.add_argument(
        "--run-dir", type=Path, help="the training run's folder (default: a temporary folder; it is large)"
    )
    parser.add_argument(
        "--model",
        default="accurate",
        help="shipped model to continue: accurate (its ONNX has the weights) or default/fast (.pt)",
    )
    parser.add_argument(
        "--lines",
        type=Path,
        help="synthetic test lines (default scripts/gpu/carry/lines/synth-lines, else rendered now)",
    )
    parser.add_argument(
        "--realdev",
        type=Path,
        action="append",
        help="real crop folders scored before/after and read during training for the record (default scripts/gpu/carry/realdev/industrial and words)",
    )
    parser.add_argument("--val", type=Path, help="validation lines (default: rendered now, the accurate run's set)")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="the whole script ends inside this (default cuda 240, cpu 1800)"
    )
    parser.add_argument("--probe-steps", type=int, default=200)
    parser.add_argument(
        "--max-steps", type=int, default=None, help="cap on the burst's steps (default: what the budget allows)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--distill-weight", type=float, default=1.0)
    parser.add_argument("--freeze-stages", type=int, default=None, help="default 3 for imported architectures, else 0")
    parser.add_argument(
        "--synthetic", type=int, default=16000, help="synthetic lines per epoch (validation each epoch)"
    )
    parser.add_argument("--workers", type=int, default=None, help="data loader processes (default: cores - 2)")
    parser.add_argument("--copy-every", type=float, default=60.0, help="seconds between two checkpoint copies")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads for the before/after scoring")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 steps (a 1-step probe, then a resumed step), batch 2, 2 validation lines, no readings during training",
    )
    args = parser.parse_args(argv)
    try:
        device = gpulib.require_device(args.device)
    except gpulib.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from edgeocr.core.sidecar import load_sidecar, sidecar_path
    from edgeocr.runtime.models import resolve_model

    if args.smoke:
        args.probe_steps, args.max_steps, args.batch_size, args.synthetic = 1, 2, 2, 8
        args.copy_every = min(args.copy_every, 2.0)
    if args.workers is None:
        args.workers = 0 if args.smoke else max(1, (os.cpu_count() or 2) - 2)
    budget = args.budget_s or (240.0 if args.device == "cuda" else 1800.0)
    deadline = gpulib.Deadline(budget)
    out = args.out or gpulib.default_out("call2")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edgeocr-burst-"))
    run_dir = args.run_dir or work / "run"
    model = resolve_model(args.model)
    sidecar = load_sidecar(sidecar_path(model))
    machine = gpulib.machine_info(device)
    report: dict[str, Any] = {
        "format": FORMAT,
        "status": "starting",
        "device": args.device,
        "smoke": args.smoke,
        "model": args.model,
        "arch": sidecar.config.arch,
        "machine": machine,
        "device_info": device,
        "software": gpulib.torch_versions(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "realdev"},
        "budget_s": budget,
        "errors": [],
    }

    def save() -> None:
        report["elapsed_s"] = round(deadline.elapsed(), 1)
        gpulib.write_json_atomic(out / "report.json", report)
        gpulib.write_text_atomic(out / "report.md", markdown(report))

    try:
        from edgeocr.data.labels import read_labels
        from edgeocr.optimize.calibration import EVAL_SEED
        from edgeocr.synth.dataset import SynthJob, synthesize

        def render(count: int, seed: int, folder: Path) -> Path:
            workers = 1 if args.smoke else max(1, min(8, os.cpu_count() or 1))
            synthesize(SynthJob(kind="lines", count=count, seed=seed, out=folder, workers=workers), progress=False)
            return folder

        carried = gpulib.CARRY / "lines" / "synth-lines"
        lines = args.lines or (carried if carried.is_dir() else render(TEST_LINES, EVAL_SEED, work / "test-lines"))
        realdev = args.realdev
        if realdev is None:
            realdev = [
                p for p in (gpulib.CARRY / "realdev" / "industrial", gpulib.CARRY / "realdev" / "words") if p.is_dir()
            ]
        val = args.val or render(VAL_LINES, VAL_SEED, work / "val-lines")
        if args.smoke:  # each new line width costs a CPU torch read about a second the first time
            val = first_lines(val, SMOKE_VAL_LINES, work / "val-smoke")
        sets = {"synthetic": Path(lines), **{f"realdev/{Path(p).name}": Path(p) for p in realdev}}
        report["data"] = {
            name: {"path": str(p), "n": len(read_labels(p, strict=True)[0])} for name, p in {**sets, "val": val}.items()
        }
        report["before"] = score(model, sets, args.threads)
        report["status"] = "training"
        save()

        paths = [str(gpulib.REPO / "src"), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        log = out / "train-log.txt"
        reports = [] if args.smoke else [Path(p) for p in realdev]  # read during training, for the record
        settings = train_settings(args, model, sidecar, run_dir, val, reports)
        report["train_settings"] = settings

        def on_copy(record: dict) -> None:
            report["last_copy"] = record
            report["checkpoint_bytes"], report["weights_bytes"] = record["checkpoint_bytes"], record["weights_bytes"]
            save()

        copier = Copier(run_dir / "checkpoints" / "last.ckpt", out, args.copy_every, on_copy).start()
        probe_steps = min(args.probe_steps, args.max_steps or args.probe_steps)
        probe = {
            "max_steps": probe_steps,
            "checkpoint_every_n_steps": 1 if args.smoke else 100,
            "report_every_n_steps": probe_steps,
        }
        phase_a = run_phase({**settings, **probe}, log, deadline.start + budget - RESERVE_S, env)
        metrics = read_metrics(run_dir)
        steps_a = int(metrics.get("steps", 0))
        fit_s = float(metrics.get("wall_time_s") or phase_a["wall_s"])
        rate = steps_a / fit_s if fit_s > 0 and steps_a else 0.0
        overhead = max(0.0, phase_a["wall_s"] - fit_s)
        report["training"] = {"probe_steps": steps_a, "probe": phase_a, "probe_rate_steps_per_s": round(rate, 3)}
        left = deadline.left() - RESERVE_S - overhead
        planned = steps_a + int(rate * left) if rate > 0 and left > 0 else steps_a
        if args.max_steps:
            planned = min(planned, args.max_steps)
        report["training"]["planned_steps"] = planned
        phases = [phase_a]
        if planned > steps_a and phase_a["returncode"] == 0:
            every = 1 if args.smoke else max(50, int(rate * 30))  # a new last.ckpt about every 30 s
            resumed = {
                "resume": True,
                "max_steps": planned,
                "checkpoint_every_n_steps": every,
                "report_every_n_steps": max(1, planned // 4),
            }
            phase_b = run_phase({**settings, **resumed}, log, deadline.start + budget - RESERVE_S, env)
            phases.append(phase_b)
            report["training"]["resumed"] = phase_b
        copier.stop()
        completed = phases[-1]["returncode"] == 0 and not phases[-1]["interrupted"]
        metrics = read_metrics(run_dir) if completed else {}
        onnx = run_dir / "model.onnx"
        if not completed or not onnx.is_file():
            from edgeocr.models.export import export_weights_file

            report["errors"].append(
                f"a training invocation was stopped or failed ({[p['returncode'] for p in phases]}); "
                "exported from the last checkpoint"
            )
            onnx = export_weights_file(run_dir / "checkpoints" / "last.ckpt", work / "export" / "model.onnx")
        step = metrics.get("steps") if completed else (copier.copies[-1]["step"] if copier.copies else None)
        report["training"].update(
            steps=step,
            wall_s=round(sum(p["wall_s"] for p in phases), 1),
            fit_s=metrics.get("wall_time_s"),
            # the last invocation's own steps over its own fitting time (the probe's rate is probe_rate_steps_per_s)
            steps_per_s=round((step - (steps_a if len(phases) > 1 else 0)) / metrics["wall_time_s"], 2)
            if step and metrics.get("wall_time_s")
            else None,
            precision=metrics.get("precision"),
            device=metrics.get("device"),
            val={k: metrics.get(k) for k in ("val_char_acc", "val_exact", "val_loss")},
            exported=metrics.get("exported"),
            copies=copier.copies,
            copy_error=copier.error,
        )
        report_eval = run_dir / "report_eval.jsonl"
        if report_eval.is_file():
            report["training"]["report_eval"] = [
                json.loads(x) for x in report_eval.read_text().splitlines() if x.strip()
            ]
        for name in ("model.onnx", "model.json"):
            source = onnx.with_name(name) if name == "model.json" else onnx
            if source.stat().st_size <= MAX_RETURNED_BYTES:
                shutil.copyfile(source, out / name)
            else:
                report["errors"].append(f"{name} is {source.stat().st_size} bytes, over 16 MiB: not returned")
        report["after"] = score(out / "model.onnx", sets, args.threads)
        report["status"] = "done"
    except Exception as exc:  # recorded in report.json, which comes back whatever happened
        report["status"] = "failed"
        report["errors"].append(f"{type(exc).__name__}: {exc}")
        save()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save()
    print(f"burst: {report['training']['steps']} steps; wrote {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
