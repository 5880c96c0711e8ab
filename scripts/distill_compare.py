#!/usr/bin/env python3
"""Does the teacher help? Train one student twice, with and without distillation, and measure both.

    python scripts/distill_compare.py --student crnn_s --teacher default \\
        --steps 600 --seed 0 --out build/distill

1. ``edgeocr.optimize.distill.distill`` trains the student from the same initial weights on the same
   synthetic lines in the same order for the same number of steps, once with the teacher
   (``--kl-weight``, into ``OUT/distilled``) and once without it (``kl_weight = 0``, into
   ``OUT/baseline``); ``--reuse`` keeps a run already there;
2. the recognition benchmark scores the teacher and both students on the first ``--test-lines``
   lines of the synthetic test set (seed 20261121, used by no training run) through the ONNX
   runtime, side by side (full report in ``OUT/bench``);
3. ``OUT/distill_compare.json`` and ``OUT/distill_compare.md``: the table and the difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeocr.bench import compare
from edgeocr.measure.timing import parse_batches
from edgeocr.optimize.distill import STATS_FILE, distill
from edgeocr.optimize.networks import resolve_trainable_model

ROOT = Path(__file__).resolve().parents[1]


def run(args: argparse.Namespace, teacher: Path, name: str, kl_weight: float) -> tuple[Path, dict]:
    out = args.out / name
    if args.reuse and (out / STATS_FILE).is_file():
        print(f"{name}: reusing {out}")
        return out / "model.onnx", json.loads((out / STATS_FILE).read_text())
    print(f"{name}: training {args.student} for {args.steps} steps of {args.batch_size}, kl_weight {kl_weight}")
    start = time.perf_counter()
    result = distill(
        args.student,
        teacher,
        out,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        kl_weight=kl_weight,
        temperature=args.temperature,
        lr=args.lr,
        val_lines=args.val_lines,
        workers=args.workers,
        overwrite=True,
    )
    print(
        f"{name}: done in {time.perf_counter() - start:.0f} s, held-out char accuracy "
        f"{100 * result.stats['held_out']['student']['char_accuracy']:.2f} %"
    )
    return result.onnx_path, result.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="crnn_s", help="architecture (from scratch) or model with .pt weights")
    parser.add_argument("--teacher", default="default", help="shipped name or .onnx with .json and .pt beside it")
    parser.add_argument("--steps", type=int, default=600)
    compare.add_measurement_arguments(parser, ROOT, "distill")
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    started = time.perf_counter()

    teacher, _ = resolve_trainable_model(args.teacher, "teacher")
    batches = parse_batches(args.batches)
    data = compare.first_lines(args.test_data, args.test_lines, args.out)  # fail on a missing test set before training
    runs = {
        "distilled": run(args, teacher, "distilled", args.kl_weight),
        "baseline": run(args, teacher, "baseline", 0.0),
    }
    records = compare.benchmark(
        {"teacher": teacher, **{name: path for name, (path, _) in runs.items()}},
        data,
        args.threads,
        batches,
        args.out / "bench",
    )

    big = str(max(batches))
    any_stats = runs["distilled"][1]
    header = [
        "model",
        "arch",
        "kl_weight",
        "steps x batch",
        "params",
        "MMACs / 256 px line",
        "train wall s",
        "held-out char % / exact %",
        "test char %",
        "test exact %",
        "p50 ms @ b1",
        f"lines/s @ b{big}",
    ]
    held_teacher = any_stats["held_out"]["teacher"]
    rows = [
        [
            "teacher",
            any_stats["teacher_arch"],
            "-",
            "-",
            any_stats["teacher_params"],
            round(any_stats["teacher_macs"] / 1e6, 1),
            "-",
            f"{100 * held_teacher['char_accuracy']:.2f} / {100 * held_teacher['exact_match']:.2f}",
        ]
    ]
    for name, (_, stats) in runs.items():
        held = stats["held_out"]["student"]
        rows.append(
            [
                name,
                stats["student_arch"],
                stats["kl_weight"],
                f"{stats['steps']} x {stats['batch_size']}",
                stats["student_params"],
                round(stats["student_macs"] / 1e6, 1),
                round(stats["wall_time_s"]),
                f"{100 * held['char_accuracy']:.2f} / {100 * held['exact_match']:.2f}",
            ]
        )
    for row, name in zip(rows, ("teacher", *runs), strict=True):
        r = records[name]
        row += [
            round(100 * r["char_accuracy"], 2),
            round(100 * r["exact_match"], 2),
            r["latency_ms_p50"],
            r["throughput_ips"][big],
        ]
    gain_char = 100 * (records["distilled"]["char_accuracy"] - records["baseline"]["char_accuracy"])
    gain_exact = 100 * (records["distilled"]["exact_match"] - records["baseline"]["exact_match"])
    verdict = (
        f"Distilled minus baseline on the test lines: {gain_char:+.2f} character-accuracy points, "
        f"{gain_exact:+.2f} exact-match points."
    )
    note = (
        f"Same student initialisation, same {args.steps * args.batch_size} synthetic training lines in the same "
        f"order (seed {args.seed}), same schedule (AdamW, lr {args.lr}, warm-up then cosine); only the KL term "
        f"(temperature {args.temperature}) differs. Held-out: {args.val_lines} synthetic lines (seed "
        f"{args.seed} + 1000003), torch greedy decoding. Test: first {args.test_lines} lines of "
        f"`{args.test_data.name}` through the ONNX runtime, {args.threads} threads, all three models in one run "
        f"(full report: `{args.out / 'bench'}`)."
    )
    table = compare.markdown_table(header, rows)
    markdown = f"# Distillation: {args.student} from {args.teacher}\n\n{table}\n\n{verdict}\n\n{note}\n"
    compare.write_outputs(
        args.out,
        "distill_compare",
        {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "runs": {n: s for n, (_, s) in runs.items()},
            "benchmark": compare.without_predictions(records),
            "distilled_minus_baseline": {"char_accuracy_points": gain_char, "exact_match_points": gain_exact},
        },
        markdown,
    )
    print(markdown)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
