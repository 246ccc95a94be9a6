#!/usr/bin/env bash
# The README's likelihood table: every model of bench/likelihood.py on one binarization of MNIST,
# under one budget of epochs, appended as JSON lines (then: python bench/likelihood_table.py FILE).
#   bash bench/likelihood_sweep.sh dynamic 20 bench/results/likelihood.jsonl
set -euo pipefail
data=${1:?dynamic or static}; epochs=${2:?epochs}; out=${3:?a .jsonl file to append to}
shift 3
cd "$(dirname "$0")/.."
runs=("vae" "hvae --batch-norm" "iaf" "vae --batch-norm" "hvae" "lvae" "iwae")
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086
  python bench/likelihood.py --model $run --data "$data" --epochs "$epochs" --k 5000 \
    --test-examples 500 "$@" >> "$out"
done
