#!/usr/bin/env bash
# The quickstart on two muonrun binaries, interleaved (old, new, old, new, ...)
# so that a busy machine slows both alike: step_avg, peak RSS and the val
# losses of each run, then the ratio of the medians and the median of each
# round's ratio.
#
#   bench/quickstart_side_by_side.sh OLD_MUONRUN NEW_MUONRUN [ROUNDS=2] [STEPS=120]
#
# OLD_MUONRUN is e.g. a build of an earlier commit:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && launch/setup.sh)
# Needs data/shakespeare (launch/quickstart.sh makes it). Runs go to a
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-2} steps=${4:-120}
[ -e data/shakespeare/train_000000.bin ] || { echo "no data/shakespeare: run launch/quickstart.sh first" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -A avg rss
for round in $(seq 1 "$rounds"); do
  for which in old new; do
    bin=${!which}
    dir=$out/$which-$round
    /usr/bin/time -f '%M' -o "$dir.rss" "$bin" train -c configs/quickstart.yaml --set run.dir="$dir" \
      --set train.steps="$steps" > "$dir.log" 2>&1
    last=$(grep -o 'step_avg:[0-9.]*ms' "$dir.log" | tail -1 | tr -dc '0-9.')
    vals=$(grep -o 'val_loss:[0-9.]*' "$dir.log" | cut -d: -f2 | tr '\n' ' ')
    kb=$(cat "$dir.rss")
    avg[$which]+="$last "
    rss[$which]+="$kb "
    printf '%s round %d: step_avg %s ms, peak RSS %.2f GB, val losses %s\n' "$which" "$round" "$last" \
      "$(echo "$kb / 1048576" | bc -l)" "$vals"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mo=$(echo "${avg[old]}" | median) mn=$(echo "${avg[new]}" | median)
printf 'median step_avg: old %s ms, new %s ms: new is %.2fx faster\n' "$mo" "$mn" "$(echo "$mo / $mn" | bc -l)"
# Each round's old/new ratio: the two runs of a round are next to each other
# in time, so a slow spell of the machine moves both.
ratios=$(paste <(echo "${avg[old]}" | tr ' ' '\n' | grep .) <(echo "${avg[new]}" | tr ' ' '\n' | grep .) |
  awk '{printf "%.3f ", $1 / $2}')
printf 'per-round ratios: %s(median %.2fx)\n' "$ratios" "$(echo "$ratios" | median)"
