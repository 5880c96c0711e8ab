#!/usr/bin/env bash
# Call 1 on the lent GPU machine (scripts/gpu/README.md): the CPU-against-GPU table.
# Run from the repository root: BUDGET_S=330 bash scripts/gpu/call1.sh [more call1_table.py options]
# Writes $OUT/table.json, $OUT/table.md and $OUT/log.txt (this script's whole output).
set -o pipefail
OUT=${OUT:-build/gpu/call1}
mkdir -p "$OUT"
{
  source scripts/gpu/device_setup.sh
  beside=()
  [ -f scripts/gpu/carry/cpu-table.json ] && beside=(--beside scripts/gpu/carry/cpu-table.json)
  ${PY:-python3} scripts/gpu/call1_table.py --device cuda --out "$OUT" --budget-s "${BUDGET_S:-330}" "${beside[@]}" "$@"
} 2>&1 | tee "$OUT/log.txt"
