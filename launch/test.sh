#!/usr/bin/env bash
# Sets muonrun up (launch/setup.sh) and runs every test (the README's second
# command; CI runs it too). Tests read golden files and corpora from
# ../shared/data, or from MUONRUN_SHARED_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BUILD_DIR=$BUILD_DIR launch/setup.sh
export OMP_WAIT_POLICY=PASSIVE
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
