#!/usr/bin/env bash
# Fuzzes every parser with libFuzzer (Debian's clang) and keeps what it found
# in tests/fuzz/corpus/, which the normal test suite replays (test_fuzz_corpus).
#
#   launch/fuzz.sh [SECONDS_PER_TARGET]       # default 60
#   TARGETS="shard json_reader" launch/fuzz.sh 30
#
# Builds the fuzzers in build-fuzz (clang, -DMUONRUN_FUZZ=ON: no LibTorch),
# runs each from its corpus with the limits of tests/fuzz/run_fuzzer.sh, then
# rebuilds the corpus as: the seed-* files, the reproducers of findings
# (crash-*, timeout-*, oom-*, leak-*: the replay test fails on them until the
# parser is fixed), and a minimal set of other inputs that reaches the code
# they do not (libFuzzer -merge=1 on edges, not hit counts, which keeps each
# corpus to a few hundred small files). Prints the executions per target;
# exits 1 on findings.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
BUILD_DIR=${BUILD_DIR:-build-fuzz}
FUZZ_CXX=${FUZZ_CXX:-clang++-14}
CORPUS_ROOT=tests/fuzz/corpus
PINNED=(-name 'seed-*' -o -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*')

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER="$FUZZ_CXX" -DMUONRUN_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR"

targets=${TARGETS:-$(ls "$CORPUS_ROOT")}
work_root=$BUILD_DIR/fuzz-run
rm -rf "$work_root"
summary=()
found=0
for target in $targets; do
  fuzzer=$BUILD_DIR/tests/fuzz/fuzz_$target
  corpus=$CORPUS_ROOT/$target
  work=$work_root/$target
  mkdir -p "$work/new" "$work/findings" "$work/merged" "$work/merge-crashes"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s (log: $work/log)"
  tests/fuzz/run_fuzzer.sh "$fuzzer" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
    -artifact_prefix="$work/findings/" "$work/new" "$corpus" >"$work/log" 2>&1 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")

  # The pinned files first, so that the merge keeps only what adds to them.
  find "$corpus" -maxdepth 1 -type f \( "${PINNED[@]}" \) -exec cp {} "$work/merged/" \;
  cp "$work"/findings/* "$work/merged/" 2>/dev/null || true
  tests/fuzz/run_fuzzer.sh "$fuzzer" -merge=1 -use_counters=0 \
    -artifact_prefix="$work/merge-crashes/" "$work/merged" "$corpus" "$work/new" >>"$work/log" 2>&1
  find "$corpus" -maxdepth 1 -type f -delete
  cp "$work"/merged/* "$corpus/"

  findings=$(ls "$work/findings" | wc -l)
  if [ "$findings" -gt 0 ]; then
    found=1
    grep -E '^(FUZZ FINDING|==[0-9]+==ERROR|SUMMARY)' "$work/log" | head -5 || true
  fi
  summary+=("$(printf '%-20s %12s executions %5s corpus files %3s findings' "$target" \
    "${execs:-?}" "$(ls "$corpus" | wc -l)" "$findings")")
done

echo
printf '%s\n' "${summary[@]}"
if [ "$found" -ne 0 ]; then
  echo "fuzz: findings copied into $CORPUS_ROOT/<target>/ (crash-*, timeout-*, oom-*, leak-*)"
  exit 1
fi
