#!/usr/bin/env bash
# What a GPU machine must verify, in one command (under 8 minutes on one H200
# with 16 cores):
#
#   1 machine  nvidia-smi, nvcc, torch and its CUDA, and the libraries the
#              build needs (says what is missing)
#   2 build    CUDA=1 launch/setup.sh: Release, sm_90a, all cores, into
#              build-cuda/ (installs nothing where python3 has torch 2.11)
#   3 tests    ctest -L cuda in build-cuda (tests/test_cuda.cpp)
#   4 data     muonrun prepare: Gutenberg JSONL -> token shards (scratch dir)
#   5 bench    bench_step: 30 steps of configs/speedrun-1gpu.yaml on those
#              shards: ms/step, tokens/s, MFU against the measured bf16
#              8192^3 matmul peak, peak memory, Newton-Schulz per step
#
#   launch/gpu_check.sh [--out DIR] [--data FILE...] [--vocab DIR] [--steps N] [--dry-run]
#
#   --out DIR    write results.md and every phase's raw log there
#   --data FILE  JSONL/text inputs for prepare (default data/gutenberg/*.jsonl.xz);
#                files named val* become the validation split
#   --vocab DIR  GPT-2 encoder.json + vocab.bpe (default data/gpt2)
#   --steps N    timed bench steps (default 30)
#   --dry-run    report the machine, check the inputs and print each phase's
#                command without running it (works without a GPU)
#
# Each phase is timed; a failing phase is reported and the later ones still
# run where they can (no build: no tests and no bench). Exits non-zero if
# anything failed, and with "no GPU: nothing verified" on a machine without one.
#
# The GPU machine has no ../shared and no network: copy the data into the
# checkout's git-ignored data/ first and send it along (about 26 MB):
#   GUTENBERG=1 launch/get_data.sh     # data/gpt2, data/gutenberg/{val,train-1}.jsonl.xz
# e.g. with the device tool: run(command="launch/gpu_check.sh --out $OUT/gpu_check",
#                                carry=["data"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=""
DATA=()
VOCAB=data/gpt2
STEPS=30
WARMUP=5
DRY_RUN=0
BUDGET_S=${GPU_CHECK_BUDGET_S:-460}  # the whole check, with room under 8 minutes
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --data)
      shift
      while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do DATA+=("$1"); shift; done ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ ${#DATA[@]} -eq 0 ]; then
  shopt -s nullglob
  DATA=(data/gutenberg/*.jsonl.xz)
  shopt -u nullglob
fi

if [ -n "$OUT" ]; then mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd); fi
LOGS=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/muonrun_gpu_check.XXXXXX")}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/muonrun_gpu_check_data.XXXXXX")
START=$(date +%s)
PHASES=()   # "name|status|seconds|note"
FAILED=0

say() { printf '%s\n' "$*"; }
banner() { printf '\n=== %s ===\n' "$*"; }
elapsed() { echo $(( $(date +%s) - START )); }
# Seconds a phase may still take: its cap, or what is left of the budget.
allowance() {
  local cap=$1 left=$(( BUDGET_S - $(elapsed) ))
  [ "$left" -lt 10 ] && left=10
  [ "$cap" -lt "$left" ] && echo "$cap" || echo "$left"
}
# record NAME STATUS SECONDS NOTE
record() {
  set -- "$1" "$2" "$3" "$4"
  if [ "$DRY_RUN" = 1 ] && [ "$1" != machine ] && [ "$2" = PASS ]; then set -- "$1" DRY "$3" "$4"; fi
  PHASES+=("$1|$2|$3|$4")
  if [ "$2" = FAIL ]; then FAILED=1; fi
  say "--- $1: $2 in ${3}s${4:+ ($4)}"
}
# run_logged LOG TIMEOUT_S COMMAND...: shows the output, keeps it in LOG,
# returns the command's status (124: timed out).
run_logged() {
  local log=$1 limit=$2; shift 2
  say "\$ $*"
  if [ "$DRY_RUN" = 1 ]; then say "(dry run: not run)"; return 0; fi
  timeout --kill-after=10 "$limit" "$@" > >(tee "$log") 2>&1
  local rc=$?
  sleep 0.2  # let tee finish writing
  [ "$rc" = 124 ] && say "(timed out after ${limit}s)"
  return $rc
}

finish() {
  local total
  total=$(elapsed)
  banner "summary (${total}s)"
  printf '%-10s %-6s %6s  %s\n' phase status secs note
  for p in "${PHASES[@]}"; do
    IFS='|' read -r name status secs note <<< "$p"
    printf '%-10s %-6s %6s  %s\n' "$name" "$status" "$secs" "$note"
  done
  if [ -n "$OUT" ]; then
    {
      echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
      echo
      echo "Machine: ${MACHINE_LINE:-?}  "
      echo "Commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')  "
      echo "Command: \`launch/gpu_check.sh $ARGS_LINE\` (${total} s)"
      echo
      echo "| phase | status | seconds | note |"
      echo "|---|---|---|---|"
      for p in "${PHASES[@]}"; do
        IFS='|' read -r name status secs note <<< "$p"
        echo "| $name | $status | $secs | $note |"
      done
      if [ -s "$LOGS/bench_step.md" ]; then
        echo
        echo "## bench_step: configs/speedrun-1gpu.yaml, $STEPS steps"
        echo
        cat "$LOGS/bench_step.md"
      fi
      if [ -s "$LOGS/ctest_summary.txt" ]; then
        echo
        echo "## CUDA tests"
        echo
        echo '```'
        cat "$LOGS/ctest_summary.txt"
        echo '```'
      fi
      echo
      echo "Raw logs: machine.log, build.log, ctest.log, prepare.log, bench.log, bench_step.json"
    } > "$OUT/results.md"
    say "results: $OUT/results.md (logs beside it)"
  else
    say "logs: $LOGS"
  fi
  rm -rf "$SCRATCH"
  if [ "$FAILED" != 0 ]; then say "gpu_check: FAILED (see above)"; exit 1; fi
  if [ "$DRY_RUN" = 1 ]; then say "gpu_check: dry run: inputs found, nothing verified"; exit 0; fi
  say "gpu_check: all phases passed"
  exit 0
}
ARGS_LINE="${OUT:+--out $OUT }--data ${DATA[*]:-none} --vocab $VOCAB --steps $STEPS$([ "$DRY_RUN" = 1 ] && echo ' --dry-run')"

# --- 1 machine ---------------------------------------------------------------
banner "1 machine"
t0=$(date +%s)
PYTHON=python3
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch' 2>/dev/null; then PYTHON=$PWD/.venv/bin/python; fi
missing=()
{
  say "host: $(hostname), $(nproc) cores, $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}'), $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi || true
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  else
    say "nvidia-smi: not found"
  fi
  if command -v nvcc >/dev/null; then nvcc --version | tail -2
  elif [ -x /usr/local/cuda/bin/nvcc ]; then /usr/local/cuda/bin/nvcc --version | tail -2
  else say "nvcc: not found"; fi
  say "g++: $(g++ --version 2>/dev/null | head -1 || echo missing)"
  say "cmake: $(cmake --version 2>/dev/null | head -1 || echo missing); ninja: $(ninja --version 2>/dev/null || echo missing)"
  "$PYTHON" - <<'EOF' || say "python: $PYTHON cannot import torch"
import sys, torch
print(f"python {sys.executable} {sys.version.split()[0]}: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, NCCL {'.'.join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else '?'}")
print(f"torch.cuda.is_available() = {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}"
      + "".join(f"\n  cuda:{i} {torch.cuda.get_device_name(i)}, "
                f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB, sm_{''.join(map(str, torch.cuda.get_device_capability(i)))}"
                for i in range(torch.cuda.device_count())))
EOF
} > >(tee "$LOGS/machine.log") 2>&1

# What the build needs, each proven by a file (as launch/setup.sh checks).
site=$("$PYTHON" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null || echo /nonexistent)
check() {  # check NAME PATH...: present when any PATH exists
  local name=$1; shift
  for f in "$@"; do if [ -e "$f" ]; then printf '  %-14s present  %s\n' "$name" "$f"; return 0; fi; done
  printf '  %-14s MISSING  (looked for %s)\n' "$name" "$*"
  missing+=("$name")
}
{
  say "libraries:"
  check "Open MPI" /usr/bin/mpicxx /usr/include/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h
  check "mpirun" /usr/bin/mpirun
  check "spdlog" /usr/include/spdlog/spdlog.h
  check "yaml-cpp" /usr/include/yaml-cpp/yaml.h
  check "GTest" /usr/include/gtest/gtest.h
  check "CLI11" /usr/include/CLI/CLI.hpp
  check "fmt" /usr/include/fmt/format.h
  check "NCCL headers" /usr/include/nccl.h "$site/nvidia/nccl/include/nccl.h" /usr/local/cuda/include/nccl.h
  check "PCRE2" /usr/include/pcre2.h
  check "liblzma" /usr/include/lzma.h
  check "zlib" /usr/include/zlib.h
  check "pkg-config" /usr/bin/pkg-config
  check "Gloo headers" /usr/include/gloo/rendezvous/store.h
  check "xz" /usr/bin/xz
  say "missing: ${missing[*]:-nothing}"
  if printf '%s\n' "${missing[@]}" | grep -qx "Gloo headers"; then
    say "  (Gloo is optional for the build: CPU ranks under torchrun need it, GPU runs do not;"
    say "   launch/setup.sh still lists libgloo-dev and tries apt for it)"
  fi
} > >(tee -a "$LOGS/machine.log") 2>&1
sleep 0.2  # let tee finish writing
MACHINE_LINE=$(grep -m1 -E 'cuda:0 ' "$LOGS/machine.log" | sed 's/^ *//')
MACHINE_LINE="${MACHINE_LINE:-no GPU}; $(grep -m1 '^python' "$LOGS/machine.log" | sed 's/^python [^ ]* /python /'); $(nproc) cores"
gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)
missing_note=""
[ ${#missing[@]} -gt 0 ] && missing_note="missing: ${missing[*]}"
record machine PASS $(( $(date +%s) - t0 )) "$gpus GPU(s)${missing_note:+; $missing_note}"
if [ "$gpus" = 0 ] && [ "$DRY_RUN" = 0 ]; then
  say ""
  say "no GPU: nothing verified (torch.cuda.is_available() is false or nvidia-smi finds none)"
  say "gpu_check: --dry-run shows what would run"
  rm -rf "$SCRATCH"
  [ -n "$OUT" ] && echo "no GPU: nothing verified" > "$OUT/results.md"
  exit 1
fi

# --- 2 build -----------------------------------------------------------------
banner "2 build (CUDA=1 launch/setup.sh)"
t0=$(date +%s)
built=0
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
if run_logged "$LOGS/build.log" "$(allowance 300)" env CUDA=1 BUILD_TYPE=Release launch/setup.sh; then
  built=1
  record build PASS $(( $(date +%s) - t0 )) "build-cuda, Release, sm_90a"
else
  rc=$?
  note="launch/setup.sh exit $rc"
  if grep -q 'apt: installing' "$LOGS/build.log" 2>/dev/null; then
    note="$note; it tried to install: $(grep -m1 'apt: installing' "$LOGS/build.log" | sed 's/.*installing //')"
  fi
  record setup FAIL $(( $(date +%s) - t0 )) "$note"
  # The same configure and build without setup.sh's package step, so that the
  # checks after it still run.
  if [ "$rc" != 124 ] && ! grep -q 'error:' "$LOGS/build.log" 2>/dev/null; then
    t0=$(date +%s)
    say "gpu_check: building build-cuda directly with cmake (what setup.sh does after its package step)"
    prefix=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
    if run_logged "$LOGS/build-direct.log" "$(allowance 300)" bash -c "
        TORCH_CUDA_ARCH_LIST=9.0a cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_PREFIX_PATH='$prefix' -DMUONRUN_PYTHON='$(command -v "$PYTHON")' -DMUONRUN_CUDA=ON \
          -DCMAKE_CUDA_COMPILER=\$(command -v nvcc || echo /usr/local/cuda/bin/nvcc) -DCMAKE_CUDA_ARCHITECTURES=90a \
        && cmake --build build-cuda"; then
      built=1
      record build PASS $(( $(date +%s) - t0 )) "direct cmake (setup.sh failed)"
    else
      record build FAIL $(( $(date +%s) - t0 )) "see build-direct.log"
    fi
  fi
fi
[ "$DRY_RUN" = 1 ] && built=1

# --- 3 CUDA tests --------------------------------------------------------------
banner "3 CUDA tests (ctest -L cuda)"
t0=$(date +%s)
if [ "$built" = 1 ]; then
  if run_logged "$LOGS/ctest.log" "$(allowance 150)" \
      ctest --test-dir build-cuda -L cuda --output-on-failure --timeout 120; then
    status=PASS
  else
    status=FAIL
  fi
  note=""
  if [ "$DRY_RUN" = 0 ]; then
    grep -E 'tests passed|Test +#|Not Run|\*\*\*' "$LOGS/ctest.log" > "$LOGS/ctest_summary.txt" 2>/dev/null
    note=$(grep -m1 'tests passed' "$LOGS/ctest.log" || echo "no ctest summary")
    # A GPU machine must run them: with one GPU only the two CudaTwoRanks
    # tests may skip ("needs 2 GPUs"), with two none.
    skipped=$(grep -c '\*\*\*Skipped' "$LOGS/ctest.log" 2>/dev/null)
    allowed=2
    [ "$gpus" -ge 2 ] && allowed=0
    [ "$(grep -c 'Test *#' "$LOGS/ctest.log" 2>/dev/null)" = 0 ] && { status=FAIL; note="no CUDA tests found (built without CUDA?)"; }
    if [ "${skipped:-0}" -gt "$allowed" ]; then
      status=FAIL
      note="$note; $skipped skipped, at most $allowed may (CudaTwoRanks without 2 GPUs)"
    elif [ "${skipped:-0}" != 0 ]; then
      note="$note; $skipped skipped: $(grep '\*\*\*Skipped' "$LOGS/ctest.log" | sed 's/.*Test *#[0-9]*: //; s/ .*//' | tr '\n' ' ')"
    fi
  fi
  record tests $status $(( $(date +%s) - t0 )) "$note"
else
  record tests FAIL 0 "not run: no build"
fi

# --- 4 data --------------------------------------------------------------------
banner "4 data (muonrun prepare)"
t0=$(date +%s)
SHARDS=$SCRATCH/shards
prepared=0
train_in=() val_in=()
for f in "${DATA[@]}"; do
  case "$(basename "$f")" in val*) val_in+=("$f") ;; *) train_in+=("$f") ;; esac
done
if [ ${#train_in[@]} -eq 0 ]; then
  record data FAIL 0 "no training input (--data, default data/gutenberg/*.jsonl.xz: GUTENBERG=1 launch/get_data.sh)"
elif [ ! -s "$VOCAB/encoder.json" ] || [ ! -s "$VOCAB/vocab.bpe" ]; then
  record data FAIL 0 "no vocabulary in $VOCAB (launch/get_data.sh)"
elif [ "$built" = 0 ]; then
  record data FAIL 0 "not run: no build"
else
  args=(--input "${train_in[@]}" --out "$SHARDS" --vocab "$VOCAB" --threads "$(nproc)")
  if [ ${#val_in[@]} -gt 0 ]; then args+=(--val-input "${val_in[@]}"); fi
  if run_logged "$LOGS/prepare.log" "$(allowance 90)" build-cuda/trainer/muonrun prepare "${args[@]}"; then
    prepared=1
    note="${#train_in[@]} train + ${#val_in[@]} val file(s)"
    [ "$DRY_RUN" = 0 ] && note="$note -> $(ls "$SHARDS" | wc -l) shards, $(du -sh "$SHARDS" | cut -f1)"
    record data PASS $(( $(date +%s) - t0 )) "$note"
  else
    record data FAIL $(( $(date +%s) - t0 )) "see prepare.log"
  fi
fi

# --- 5 bench -------------------------------------------------------------------
banner "5 bench (bench_step, configs/speedrun-1gpu.yaml, $STEPS steps)"
t0=$(date +%s)
if [ "$prepared" = 1 ]; then
  if run_logged "$LOGS/bench.log" "$(allowance 240)" build-cuda/bench/bench_step -c configs/speedrun-1gpu.yaml \
      --set "data.train=$SHARDS/train_*.bin" --set "data.val=$SHARDS/val_*.bin" --set run.device=cuda \
      --steps "$STEPS" --warmup "$WARMUP" --json "$LOGS/bench_step.json" --out-md "$LOGS/bench_step.md"; then
    note=""
    if [ "$DRY_RUN" = 0 ]; then
      note=$("$PYTHON" - "$LOGS/bench_step.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['step_ms_median']:.1f} ms/step, {r['tokens_per_s']:,.0f} tokens/s, MFU {100 * r['mfu']:.1f}% "
      f"of {r['matmul_peak']['best_tflops']:.1f} TFLOP/s, peak {r['peak_memory_bytes'] / 1e9:.1f} GB, "
      f"Newton-Schulz {r['phases_ms']['newton_schulz']:.1f} ms/step, slowest/median {r['slowest_over_median']:.2f}")
EOF
)
    fi
    record bench PASS $(( $(date +%s) - t0 )) "$note"
  else
    record bench FAIL $(( $(date +%s) - t0 )) "see bench.log"
  fi
else
  record bench FAIL 0 "not run: no shards"
fi

finish
