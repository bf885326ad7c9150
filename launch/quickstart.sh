#!/usr/bin/env bash
# The README's first command: sets muonrun up, fetches the GPT-2 vocabulary
# and Shakespeare, tokenizes them into shards, trains a small GPT on the CPU
# (a few minutes on 2 cores) and prints a sample from it.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
launch/get_data.sh
muonrun=build/trainer/muonrun
if [ ! -e data/shakespeare/train_000000.bin ]; then
  "$muonrun" prepare --input data/tinyshakespeare.txt --val-tokens 32768 --out data/shakespeare
fi
export OMP_WAIT_POLICY=PASSIVE  # idle OpenMP threads sleep instead of spinning
"$muonrun" train -c configs/quickstart.yaml "$@"
echo
echo "sample from the trained model:"
"$muonrun" sample --checkpoint runs/quickstart --prompt "ROMEO:" --max-tokens 120
