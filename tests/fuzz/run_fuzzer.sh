#!/usr/bin/env bash
# Runs a muonrun fuzzer with the limits that decide what counts as a finding,
# so that launch/fuzz.sh and the fuzz_smoke tests agree: a crash, a sanitizer
# report, an abort from a target's checks, one input taking over 10 s, the
# process growing over 2 GiB, or a single allocation over 1 GiB.
#
#   run_fuzzer.sh FUZZER [libFuzzer options and directories...]
set -euo pipefail
fuzzer=$1
shift
exec "$fuzzer" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=4096 "$@"
