#!/usr/bin/env bash
# Call 2 on the lent GPU machine (scripts/gpu/README.md): a training burst of the accurate recogniser.
# Run from the repository root: BUDGET_S=240 bash scripts/gpu/call2.sh [more call2_train_burst.py options]
# Writes $OUT/report.json, report.md, burst-weights.pt, model.onnx, model.json, train-log.txt and log.txt.
set -o pipefail
OUT=${OUT:-build/gpu/call2}
mkdir -p "$OUT"
{
  source scripts/gpu/device_setup.sh
  ${PY:-python3} scripts/gpu/call2_train_burst.py --device cuda --out "$OUT" --budget-s "${BUDGET_S:-240}" "$@"
} 2>&1 | tee "$OUT/log.txt"
