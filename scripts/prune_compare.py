#!/usr/bin/env python3
"""Prune a model several ways and measure every result beside the original, in one run.

    python scripts/prune_compare.py --model default \\
        --structured 0.3 0.5 --magnitude 0.5 --finetune-steps 300 --out build/prune

1. ``edgeocr.optimize.pruning.prune`` for each structured ratio and each magnitude ratio (each
   fine-tuned ``--finetune-steps`` steps on synthetic lines), into ``OUT/structured-R`` and
   ``OUT/magnitude-R`` (``--reuse`` keeps a variant already there);
2. the recognition benchmark on the first ``--test-lines`` lines of the synthetic test set (seed
   20261121, never trained on): the original and every variant through the ONNX runtime, the same
   threads, batch 1 latency and batched throughput, side by side (full report in ``OUT/bench``);
3. ``OUT/prune_compare.json`` and ``OUT/prune_compare.md``: size, compressed size, sparsity, MACs,
   accuracy and speed of each, with the speed-up over the original.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeocr.bench import compare
from edgeocr.measure.timing import parse_batches
from edgeocr.optimize.networks import count_macs, load_network, resolve_trainable_model
from edgeocr.optimize.pruning import FINETUNE_LR, STATS_FILE, compressed_size, prune

ROOT = Path(__file__).resolve().parents[1]


def run_variant(
    args: argparse.Namespace, source: Path, method: str, ratio: float, kl_weight: float = 0.0
) -> tuple[Path, dict]:
    out = args.out / (f"{method}-{ratio:g}" + ("-kd" if kl_weight else ""))
    if args.reuse and (out / STATS_FILE).is_file():
        print(f"{out.name}: reusing {out}")
        return out / "model.onnx", json.loads((out / STATS_FILE).read_text())
    print(
        f"{out.name}: pruning and fine-tuning {args.finetune_steps} steps"
        + (" with the original as teacher" if kl_weight else "")
    )
    start = time.perf_counter()
    result = prune(
        source,
        ratio,
        method,
        out,
        finetune_steps=args.finetune_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        recovery_kl_weight=kl_weight,
        val_lines=args.val_lines,
        workers=args.workers,
        overwrite=True,
    )
    print(f"{out.name}: done in {time.perf_counter() - start:.0f} s")
    return result.onnx_path, {**result.stats, "prune_wall_time_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="shipped name or .onnx with .json and .pt beside it")
    parser.add_argument("--structured", type=float, nargs="*", default=[0.3, 0.5], help="channel ratios")
    parser.add_argument("--magnitude", type=float, nargs="*", default=[0.5], help="weight sparsities")
    parser.add_argument(
        "--structured-kd",
        type=float,
        nargs="*",
        default=[],
        help="channel ratios fine-tuned with the original as teacher (CTC + frame KL)",
    )
    parser.add_argument("--kd-weight", type=float, default=1.0, help="KL weight of the --structured-kd variants")
    parser.add_argument("--finetune-steps", type=int, default=300)
    compare.add_measurement_arguments(parser, ROOT, "prune")
    parser.add_argument("--lr", type=float, default=FINETUNE_LR)
    args = parser.parse_args()
    started = time.perf_counter()

    source, weights = resolve_trainable_model(args.model)
    batches = parse_batches(args.batches)
    data = compare.first_lines(args.test_data, args.test_lines, args.out)  # fail on a missing test set before training
    plan = [("structured", r, 0.0) for r in args.structured] + [("magnitude", r, 0.0) for r in args.magnitude]
    plan += [("structured", r, args.kd_weight) for r in args.structured_kd]
    variants = {}
    for method, ratio, kl_weight in plan:
        path, stats = run_variant(args, source, method, ratio, kl_weight)
        variants[path.parent.name] = (path, stats)
    models = {"original": source, **{name: path for name, (path, _) in variants.items()}}
    records = compare.benchmark(models, data, args.threads, batches, args.out / "bench")

    cfg, network = load_network(weights)
    figures = {
        "original": {
            "params": sum(p.numel() for p in network.parameters()),
            "macs": count_macs(network, cfg),
            "onnx": source.stat().st_size,
            "deflated": compressed_size(source.read_bytes()),
            "sparsity": "-",
            "held": "-",
        }
    }
    for name, (_, stats) in variants.items():
        held = stats["held_out"]
        figures[name] = {
            "params": stats["params_after"],
            "macs": stats["macs_after"],
            "onnx": stats["onnx_bytes_after"],
            "deflated": stats["compressed_bytes_after"],
            "sparsity": f"{stats['sparsity']:.3f}",
            "held": " / ".join(
                f"{100 * held[k]['char_accuracy']:.1f}"
                for k in ("source", "pruned", "final")
                if k in held and held[k]["char_accuracy"] is not None
            ),
        }
    big = str(max(batches))
    base = records["original"]
    header = [
        "model",
        "params",
        "MMACs / 256 px line",
        "ONNX MB",
        "deflated MB",
        "weight sparsity",
        "held-out char % (source / pruned / fine-tuned)",
        "test char %",
        "test exact %",
        "p50 ms @ b1",
        "speed-up b1",
        f"lines/s @ b{big}",
        f"speed-up b{big}",
    ]
    rows = []
    for name, f in figures.items():
        r = records[name]
        rows.append(
            [
                name,
                f["params"],
                round(f["macs"] / 1e6, 1),
                round(f["onnx"] / 1e6, 2),
                round(f["deflated"] / 1e6, 2),
                f["sparsity"],
                f["held"],
                round(100 * r["char_accuracy"], 2),
                round(100 * r["exact_match"], 2),
                r["latency_ms_p50"],
                f"{base['latency_ms_p50'] / r['latency_ms_p50']:.2f}",
                r["throughput_ips"][big],
                f"{r['throughput_ips'][big] / base['throughput_ips'][big]:.2f}",
            ]
        )
    table = compare.markdown_table(header, rows)
    note = (
        f"Test: first {args.test_lines} lines of `{args.test_data.name}` through the ONNX runtime, "
        f"{args.threads} threads, all models in one run (full report: `{args.out / 'bench'}`). Held-out: "
        f"{args.val_lines} synthetic lines (seed {args.seed} + 1000003), torch greedy decoding, before pruning / "
        f"right after / after {args.finetune_steps} fine-tuning steps of {args.batch_size} (lr {args.lr}; `-kd`: "
        f"with the original as teacher, KL weight {args.kd_weight}). Magnitude pruning stores its zeros densely: "
        "no speed gain is claimed for it."
    )
    markdown = f"# Pruning: {args.model}\n\n{table}\n\n{note}\n"
    compare.write_outputs(
        args.out,
        "prune_compare",
        {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "variants": {n: s for n, (_, s) in variants.items()},
            "benchmark": compare.without_predictions(records),
        },
        markdown,
    )
    print(markdown)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
