#!/usr/bin/env python3
"""Ship a trained recogniser as a package model and measure it for its model card.

    .venv/bin/python scripts/ship_model.py --run RUN_DIR --name default [--realdev ../shared/realdev]

1. copies RUN_DIR/model.{onnx,json,pt} to src/edgeocr/assets/models/NAME.{onnx,json,pt} (the sidecar's
   checksum still matches: the ONNX bytes are unchanged; an imported architecture has no .pt, its
   .onnx is what fine-tuning starts from; a sidecar of format 1, from a run older than bound settings,
   is bound to the model, an edited one stops the script);
2. renders a synthetic test set that no training run saw (its own seed, 5000 lines by default) and
   scores the model on it with ``edgeocr eval``;
3. scores it on realdev/industrial and realdev/words when those folders exist (evaluation only:
   nothing from them is copied or kept besides the figures);
4. writes build/ship/NAME/{synthetic_test,realdev_industrial,realdev_words}.json and a summary
   (summary.json) that the model card quotes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shipping import ROOT, bind_copied_sidecar, edgeocr, ship_parser

ASSETS = ROOT / "src" / "edgeocr" / "assets" / "models"
# Far from the training seeds (0 and its validation seed 1000003) and from the demo's seed 0.
TEST_SEED = 20261121
KEYS = ("n", "char_accuracy", "exact_match", "char_accuracy_relaxed", "exact_match_relaxed", "latency_ms_p50")


def summary(result: dict) -> dict:
    return {
        "all": {k: result[k] for k in KEYS},
        "per_category": {c: {k: r[k] for k in KEYS} for c, r in result["per_category"].items()},
    }


def peers_table(peers_md: Path) -> dict[str, dict[str, str]]:
    """{category: {peer: "strict / relaxed / exact"}} from the industrial table of realdev's PEERS.md."""
    rows: dict[str, dict[str, str]] = {}
    section, header = None, []
    for line in peers_md.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif section == "industrial" and line.startswith("| category"):
            header = [cell.strip().split(" ")[0] for cell in line.strip("|").split("|")]
        elif section == "industrial" and line.startswith("|") and header and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = dict(zip(header[2:], cells[2:]))
    return rows


def comparison_markdown(name: str, ours: dict, peers: dict[str, dict[str, str]]) -> str:
    """Per category: our strict / relaxed character accuracy and relaxed exact match beside each peer's."""
    names = sorted({p for row in peers.values() for p in row})
    lines = [f"| category | n | edgeocr {name} | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    categories = [*sorted(ours["per_category"]), "ALL"]
    for category in categories:
        r = ours["all"] if category == "ALL" else ours["per_category"][category]
        mine = (
            f"{100 * r['char_accuracy']:.1f} / {100 * r['char_accuracy_relaxed']:.1f} / "
            f"{100 * r['exact_match_relaxed']:.0f}"
        )
        lines.append(
            f"| {category} | {r['n']} | {mine} | "
            + " | ".join(peers.get(category, {}).get(n, "-") for n in names)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = ship_parser(__doc__)
    parser.add_argument("--test-lines", type=int, default=5000)
    args = parser.parse_args()

    ASSETS.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json", ".pt"):
        target = ASSETS / f"{args.name}{suffix}"
        if (args.run / f"model{suffix}").is_file():
            shutil.copyfile(args.run / f"model{suffix}", target)
        elif suffix == ".pt":
            target.unlink(missing_ok=True)  # an imported architecture fine-tunes from its .onnx
    shipped = ASSETS / f"{args.name}.onnx"
    bind_copied_sidecar(shipped)
    out = ROOT / "build" / "ship" / args.name
    out.mkdir(parents=True, exist_ok=True)

    test_dir = ROOT / "build" / f"synth-test-{TEST_SEED}-{args.test_lines}"
    if not (test_dir / "labels.tsv").is_file():
        edgeocr(
            "synth",
            "lines",
            "--count",
            str(args.test_lines),
            "--seed",
            str(TEST_SEED),
            "--workers",
            "2",
            "--out",
            str(test_dir),
            "--overwrite",
            "--quiet",
        )
    edgeocr(
        "eval",
        "--data",
        str(test_dir),
        "--model",
        str(shipped),
        "--threads",
        str(args.threads),
        "--json",
        str(out / "synthetic_test.json"),
        "--quiet",
    )
    report = {
        "model": str(shipped.relative_to(ROOT)),
        "onnx_bytes": shipped.stat().st_size,
        "training": json.loads((args.run / "metrics.json").read_text()),
        "synthetic_test": {"seed": TEST_SEED, **summary(json.loads((out / "synthetic_test.json").read_text()))},
    }
    industrial = args.realdev / "industrial"
    if (industrial / "labels.tsv").is_file():
        edgeocr(
            "eval",
            "--data",
            str(industrial),
            "--model",
            str(shipped),
            "--threads",
            str(args.threads),
            "--json",
            str(out / "realdev_industrial.json"),
        )
        report["realdev_industrial"] = summary(json.loads((out / "realdev_industrial.json").read_text()))
        if (args.realdev / "PEERS.md").is_file():
            table = comparison_markdown(args.name, report["realdev_industrial"], peers_table(args.realdev / "PEERS.md"))
            (out / "realdev_comparison.md").write_text(table + "\n")
            print(table)
    words = args.realdev / "words"
    if (words / "labels.tsv").is_file():
        edgeocr(
            "eval",
            "--data",
            str(words),
            "--model",
            str(shipped),
            "--threads",
            str(args.threads),
            "--json",
            str(out / "realdev_words.json"),
        )
        report["realdev_words"] = summary(json.loads((out / "realdev_words.json").read_text()))
    (out / "summary.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "training"}, indent=1))


if __name__ == "__main__":
    main()
