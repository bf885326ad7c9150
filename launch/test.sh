#!/usr/bin/env bash
# Sets muonrun up (launch/setup.sh) and runs every test (the README's second
# command; CI runs it too): the suites of build/, then each libFuzzer target
# for FUZZ_SECONDS (10) from its corpus (tests/fuzz/), which fails on any
# crash, sanitizer report, hang or huge allocation it finds.
# Tests read golden files and corpora from ../shared/data, or from
# MUONRUN_SHARED_DIR. FUZZ=0 skips the fuzzers (and installing clang).
#
#   launch/test.sh                  # everything
#   launch/test.sh -R Distributed   # ctest options apply to the suites of build/
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export FUZZ=${FUZZ:-1} FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
BUILD_DIR=$BUILD_DIR launch/setup.sh
export OMP_WAIT_POLICY=PASSIVE
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
if [ "$FUZZ" = 1 ]; then
  ctest --test-dir "$FUZZ_BUILD_DIR" --output-on-failure -j "$(nproc)" -L fuzz_smoke
else
  echo "test: fuzzers skipped (FUZZ=0)"
fi
