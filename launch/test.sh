#!/usr/bin/env bash
# Sets muonrun up and runs every test (the README's second command; CI runs
# it too), printing how long each phase took:
#   setup + CPU build (build/)   launch/setup.sh: packages, the venv's torch, build
#   CPU tests                    every suite of build/ (ctest)
#   CUDA build (build-cuda/)     MUONRUN_CUDA=ON for sm_90a against the same
#                                torch and the toolkit's nvcc: every target
#                                compiles and links, CUDA tests included
#   CUDA tests                   ctest -L cuda in build-cuda/: without a GPU
#                                each says "skipped: no CUDA device"
#   fuzzers                      each libFuzzer target for FUZZ_SECONDS (10)
# Tests read golden files and corpora from ../shared/data, or from
# MUONRUN_SHARED_DIR. FUZZ=0 skips the fuzzers (and installing clang);
# CUDA=0 skips the CUDA build (e.g. where there is no CUDA toolkit).
#
#   launch/test.sh                  # everything
#   launch/test.sh -R Distributed   # ctest options apply to the suites of build/
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
CUDA_BUILD_DIR=${CUDA_BUILD_DIR:-build-cuda}
RUN_CUDA=${CUDA:-1}
export FUZZ=${FUZZ:-1} FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
export OMP_WAIT_POLICY=PASSIVE

phases=()
phase() {  # phase NAME COMMAND...: runs it and records its time
  local name=$1 start=$SECONDS
  shift
  echo "test: === $name ==="
  "$@"
  phases+=("$(printf '%-28s %5d s' "$name" $((SECONDS - start)))")
}
report() {
  echo "test: phase times"
  for p in "${phases[@]}"; do echo "  $p"; done
}
trap report EXIT

phase "setup + CPU build" env CUDA=0 BUILD_DIR="$BUILD_DIR" launch/setup.sh
phase "CPU tests" ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
if [ "$RUN_CUDA" = 1 ]; then
  phase "CUDA build" env CUDA=1 FUZZ=0 BUILD_DIR="$CUDA_BUILD_DIR" launch/setup.sh
  phase "CUDA tests" ctest --test-dir "$CUDA_BUILD_DIR" --output-on-failure -L cuda
else
  echo "test: CUDA build skipped (CUDA=0)"
fi
if [ "$FUZZ" = 1 ]; then
  phase "fuzzers" ctest --test-dir "$FUZZ_BUILD_DIR" --output-on-failure -j "$(nproc)" -L fuzz_smoke
else
  echo "test: fuzzers skipped (FUZZ=0)"
fi
