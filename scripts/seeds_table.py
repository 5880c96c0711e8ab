#!/usr/bin/env python3
"""The seeds' experiment, measured: a peer as its own package runs it, beside our ONNX of the same
weights, its int8, and its fine-tuned int8, on real crops, all in one run.

    python scripts/seeds_table.py --peer ppocrv6 --peer easyocr \\
        --model "PP-OCRv6: our ONNX fp32=R/import/ppocrv6/model.onnx" \\
        --model "PP-OCRv6: int8=R/int8-gated-import-ppocrv6/model.onnx" ... \\
        --data ../shared/realdev/industrial --data ../shared/realdev/words --out build/seeds

Every engine (the peers through their packages, our models through the torch-free runtime) reads
every crop of each ``--data`` set one at a time (batch 1) with the same threads, one engine after
another in this one process (:func:`edgeocr.bench.harness.run_rec_benchmark`; its full reports go to
``OUT/<set>/``). ``OUT/seeds_table.md`` and ``.json``: for each engine, size on disk, p50 ms per crop
and strict / relaxed character accuracy on each set, in the order given.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from edgeocr.bench.compare import markdown_table, without_predictions, write_outputs
from edgeocr.bench.harness import run_rec_benchmark
from edgeocr.bench.peers import PEERS, EdgeOcrEngine
from edgeocr.measure.resources import environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", action="append", default=[], choices=sorted(PEERS), help="a peer package")
    parser.add_argument("--model", action="append", default=[], help="LABEL=PATH of one of our .onnx models")
    parser.add_argument("--data", action="append", type=Path, required=True, help="labels.tsv folder of crops")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    order = [f"peer:{p}" for p in args.peer] + list(models)
    records: dict[str, dict[str, dict]] = {}
    for data in args.data:
        engines = [PEERS[p](threads=args.threads, max_batch_size=1) for p in args.peer]
        for engine, peer in zip(engines, args.peer, strict=True):
            engine.name = f"peer:{peer}"
        engines += [EdgeOcrEngine(Path(path), args.threads, 1, name=label) for label, path in models.items()]
        result = run_rec_benchmark(
            data, engines, (1,), threads=args.threads, out_dir=args.out / data.name, progress=print
        )
        records[data.name] = without_predictions({r["name"]: r for r in result["engines"]})
    header = ["engine", "size MB", *(f"{d.name}: p50 ms / strict % / relaxed %" for d in args.data)]
    rows = []
    for name in order:
        first = records[args.data[0].name][name]
        cells = [name, f"{first['model_size_bytes'] / 1e6:.2f}" if first.get("model_size_bytes") else "-"]
        for data in args.data:
            r = records[data.name][name]
            if r["status"] != "ok":
                cells.append(f"{r['status']}: {r.get('reason', '')}")
                continue
            cells.append(
                f"{r['latency_ms_p50']:.2f} / {100 * r['char_accuracy']:.1f} / {100 * r['char_accuracy_relaxed']:.1f}"
            )
        rows.append(cells)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = markdown_table(header, rows)
    env = environment()
    note = f"Measured {when} on {env['cpu']['model']}, {args.threads} threads, batch 1, one process."
    print(table)
    write_outputs(args.out, "seeds_table", {"when": when, "records": records, "order": order}, f"{note}\n\n{table}\n")


if __name__ == "__main__":
    main()
