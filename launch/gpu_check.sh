#!/usr/bin/env bash
# What a GPU machine must verify, in one command that fits one call of the
# device tool (timeout_s=540; one H200, 16 cores, no network). The phases, in
# order, with their budgets in seconds:
#
#   phase    budget  minimum  what
#   machine      15        5  nvidia-smi, nvcc, torch and its CUDA, and what the
#                             CUDA build lacks (CUDA=1 PACKAGES=check launch/setup.sh)
#   setup       170       60  CUDA=1 TARGETS=muonrun launch/setup.sh: packages only
#                             where missing and apt answers, configure build-cuda
#                             (Release, sm_90a), build muonrun
#   build        60       30  the rest of gpu_check_targets (bench_step and the CUDA
#                             test executables, bench/CMakeLists.txt), while
#                             `muonrun prepare` tokenizes the data beside it
#   tests        90       30  ctest -L cuda in build-cuda; a test that crashes is
#                             run again under cuda-gdb for its backtrace
#   data         10        5  waits for prepare: Gutenberg JSONL -> token shards
#   bench       165      100  bench_step in five settings, one table: record 11
#                             (configs/speedrun-1gpu.yaml) with model.kernels=
#                             reference and fused; record 29
#                             (configs/record29-1gpu.yaml) with and without its
#                             FP8 head; record 50 (configs/record50-1gpu.yaml,
#                             its last stage's batch) (ms/step, tokens/s, MFU, peak memory,
#                             Newton-Schulz and communication shares;
#                             bench/step_table.py)
#   in all      510           30 s under the call's 540 s, for the summary
#
# Each phase runs under `timeout`: it may take what is left of the 510 s less
# the minimum of every phase after it. A slow phase thus shortens the later
# ones, never below their minimum, and the bench runs fewer steps to fit (and
# says so). Status of a phase: PASS; WARN (setup: packages were missing or
# their install failed, and the build worked all the same); FAIL; SKIP
# (nothing to run it on); DRY (--dry-run). Exits 1 if a phase failed, and on
# a machine without a GPU after the machine phase ("no GPU: nothing verified").
#
#   launch/gpu_check.sh [--out DIR] [--data FILE...] [--vocab DIR] [--steps N]
#                       [--budget S] [--build-dir DIR] [--dry-run] [--list]
#
#   --out DIR        write results.md (phases, the bench table, the CUDA tests),
#                    one log per phase and bench.json there: 8 files, which the
#                    device tool brings back from one folder
#   --data FILE...   JSONL/text inputs for prepare (default data/gutenberg/*.jsonl.xz);
#                    files named val* become the validation split
#   --vocab DIR      GPT-2 encoder.json + vocab.bpe (default data/gpt2)
#   --steps N        timed bench steps per setting at most (default 20; fewer
#                    when the bench's time is short)
#   --budget S       what the phases may take together (default 510; the call
#                    then needs S + 30 s): less when the session has less
#                    device time left; the bench gets what the others leave
#   --build-dir DIR  the CUDA build (default build-cuda)
#   --dry-run        run the machine phase, check the inputs, and print each
#                    other phase's commands, targets and time without running
#                    them (works without a GPU)
#   --list           print what a GPU run verifies, one item a line: the build,
#                    each CUDA test, each bench setting (README.md, "Checking a
#                    GPU machine", has a row for each)
#
# The GPU machine has no ../shared and no network: copy the data into the
# checkout's git-ignored data/ first and send it along (about 26 MB), with the
# development files its image lacks (PCRE2's and liblzma's, seen 2026-12-04;
# setup installs them from .packages when apt does not answer, 1 MB):
#   GUTENBERG=1 launch/get_data.sh     # data/gpt2, data/gutenberg/{val,train-1}.jsonl.xz
#   launch/offline_packages.sh download   # .packages/libpcre2-dev_*.deb, liblzma-dev_*.deb
# then with the device tool: run(command="launch/gpu_check.sh --out $OUT/gpu_check",
#                                carry=["data", ".packages"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

PHASE_NAMES=(machine setup build tests data bench)
declare -A BUDGET=([machine]=15 [setup]=170 [build]=60 [tests]=90 [data]=10 [bench]=165)
declare -A MINIMUM=([machine]=5 [setup]=60 [build]=30 [tests]=30 [data]=5 [bench]=100)
CALL_S=540   # the device tool's timeout_s for the whole call
TOTAL_S=510  # what the phases may take together
# The bench's settings, "name|config|bench_step overrides", in the order they
# run: record 11 in two settings (CUDA graphs, measured at +0.5% on
# 2026-12-04, gave its place to record 50), record 29 with and without its
# FP8 head, record 50.
SETTINGS=("model.kernels=reference|configs/speedrun-1gpu.yaml|model.kernels=reference"
          "model.kernels=fused|configs/speedrun-1gpu.yaml|model.kernels=fused"
          "record29|configs/record29-1gpu.yaml|"
          "record29 model.fp8_head=false|configs/record29-1gpu.yaml|model.fp8_head=false"
          "record50|configs/record50-1gpu.yaml|")
# The first setting's steps are planned before anything is measured, from a
# guess (record 11's PyTorch script takes about 1.1 s per 524,288-token step
# on one H100) and a process start (CUDA context, model, data, matmul peak);
# the later settings' from the first one's measured time.
GUESS_STEP_S=1.5
GUESS_START_S=20
MIN_STEPS=5
WARMUP=3

OUT=""
DATA=()
VOCAB=data/gpt2
STEPS=20
BUILD_DIR=build-cuda
DRY_RUN=0
LIST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --budget) TOTAL_S=$2; CALL_S=$(( $2 + 30 )); shift 2 ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --list) LIST=1; shift ;;
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

say() { printf '%s\n' "$*"; }

# --- what gets built and verified ---------------------------------------------

# TARGETS: what gpu_check_targets stands for. CMake's own list once the build
# is configured, else the same rule read from tests/CMakeLists.txt (muonrun,
# bench_step and every test_cuda* executable); TARGETS_FROM says which.
resolve_targets() {
  if [ -s "$BUILD_DIR/gpu_check_targets.txt" ]; then
    TARGETS=$(cat "$BUILD_DIR/gpu_check_targets.txt")
    TARGETS_FROM="$BUILD_DIR/gpu_check_targets.txt, written by CMake"
  else
    TARGETS="muonrun bench_step $(grep -oE 'add_executable\(test_cuda[A-Za-z0-9_]*' tests/CMakeLists.txt |
                                   sed 's/add_executable(//' | tr '\n' ' ')"
    TARGETS=${TARGETS% }
    TARGETS_FROM="derived from tests/CMakeLists.txt: muonrun, bench_step and every add_executable(test_cuda*);"
    TARGETS_FROM+=" configuring $BUILD_DIR writes CMake's own list to $BUILD_DIR/gpu_check_targets.txt"
  fi
}

# "Suite.Name file" for every GoogleTest test of the CUDA test sources (tests/test_cuda*.cpp).
cuda_tests() {
  local file
  for file in tests/test_cuda*.cpp; do
    grep -oE '^TEST(_F)?\( *[A-Za-z0-9_]+ *, *[A-Za-z0-9_]+' "$file" | sed -E "s/^TEST(_F)?\( *//; s/ *, */./; s|\$| $file|"
  done
}

list_items() {
  local name file setting config
  resolve_targets
  printf '%-6s  %-56s  %s\n' build gpu_check_targets "$TARGETS, built on the GPU machine"
  while read -r name file; do printf '%-6s  %-56s  %s\n' test "$name" "$file"; done < <(cuda_tests)
  for setting in "${SETTINGS[@]}"; do
    IFS='|' read -r name config _ <<< "$setting"
    printf '%-6s  %-56s  %s\n' bench "$name" "bench_step, $config"
  done
}

if [ "$LIST" = 1 ]; then
  list_items
  exit 0
fi

# --- phases, budgets and records -----------------------------------------------

if [ -n "$OUT" ]; then mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd); fi
LOGS=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/muonrun_gpu_check.XXXXXX")}
for f in results.md bench.json "${PHASE_NAMES[@]/%/.log}"; do rm -f "$LOGS/$f"; done
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/muonrun_gpu_check_data.XXXXXX")
START=$(date +%s)
RECORDS=()  # "phase|status|seconds|note"
FAILED=0
PHASE="" PHASE_T0=0 LIMIT=0

# Seconds since the start; a dry run counts each phase as taking its budget
# (PLANNED), so that it shows the allowances of a run that goes to plan.
PLANNED=0
elapsed() {
  if [ "$DRY_RUN" = 1 ]; then echo "$PLANNED"; else echo $(( $(date +%s) - START )); fi
}

# What the phases after $1 are sure to keep.
later_minimums() {
  local sum=0 after=0 p
  for p in "${PHASE_NAMES[@]}"; do
    [ "$after" = 1 ] && sum=$(( sum + MINIMUM[$p] ))
    [ "$p" = "$1" ] && after=1
  done
  echo "$sum"
}

# Seconds phase $1 may take from now: what is left, less what the later phases keep.
allowance() {
  local left=$(( TOTAL_S - $(elapsed) - $(later_minimums "$1") ))
  [ "$left" -lt 1 ] && left=1
  echo "$left"
}

start_phase() {  # start_phase NAME TITLE
  local p
  PLANNED=0
  for p in "${PHASE_NAMES[@]}"; do [ "$p" = "$1" ] && break; PLANNED=$(( PLANNED + BUDGET[$p] )); done
  PHASE=$1 PHASE_T0=$(date +%s) LIMIT=$(allowance "$1")
  printf '\n=== %s: %s (budget %d s; may take %d s at %d s in, the later phases keep %d s) ===\n' \
    "$1" "$2" "${BUDGET[$1]}" "$LIMIT" "$(elapsed)" "$(later_minimums "$1")"
}

end_phase() {  # end_phase STATUS NOTE
  local status=$1 secs=$(( $(date +%s) - PHASE_T0 ))
  if [ "$DRY_RUN" = 1 ] && [ "$PHASE" != machine ] && [ "$status" = PASS ]; then status=DRY; fi
  RECORDS+=("$PHASE|$status|$secs|$2")
  [ "$status" = FAIL ] && FAILED=1
  say "--- $PHASE: $status in ${secs} s of ${LIMIT} s${2:+ ($2)}"
  write_results
}

# run_logged LOG LIMIT COMMAND...: shows the output and appends it to LOG;
# returns the command's status (124: timed out). A dry run only prints it.
run_logged() {
  local log=$1 limit=$2 rc
  shift 2
  say "\$ $*"
  if [ "$DRY_RUN" = 1 ]; then say "(dry run: not run; it would have ${limit} s)"; return 0; fi
  timeout --kill-after=10 "$limit" "$@" > >(tee -a "$log") 2>&1
  rc=$?
  sleep 0.2  # let tee finish writing
  [ "$rc" = 124 ] && say "(timed out after ${limit} s)"
  return $rc
}

print_plan() {
  local p sum=0
  printf '\n=== plan: %d phases in %d s (the device call'"'"'s %d s less %d s for the summary) ===\n' \
    "${#PHASE_NAMES[@]}" "$TOTAL_S" "$CALL_S" $(( CALL_S - TOTAL_S ))
  printf '%-8s %7s %8s\n' phase budget minimum
  for p in "${PHASE_NAMES[@]}"; do
    printf '%-8s %5d s %6d s\n' "$p" "${BUDGET[$p]}" "${MINIMUM[$p]}"
    sum=$(( sum + BUDGET[$p] ))
  done
  printf '%-8s %5d s\n' "in all" "$sum"
  resolve_targets
  say "targets: $TARGETS"
  say "  ($TARGETS_FROM)"
  say "verifies on a GPU: the build, $(cuda_tests | wc -l) CUDA tests, ${#SETTINGS[@]} bench settings (--list names them)"
}

# results.md in --out DIR, rewritten after each phase: a call cut short at
# its limit still brings back what was done.
write_results() {
  [ -n "$OUT" ] || return 0
  local p name status secs note
  {
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: ${MACHINE_LINE:-?}  "
    echo "Commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')  "
    echo "Command: \`launch/gpu_check.sh $ARGS_LINE\` ($(elapsed) s)"
    echo
    echo "| phase | status | budget s | took s | note |"
    echo "|---|---|---|---|---|"
    for p in "${RECORDS[@]}"; do
      IFS='|' read -r name status secs note <<< "$p"
      echo "| $name | $status | ${BUDGET[$name]} | $secs | $note |"
    done
    if [ -s "$SCRATCH/bench_table.md" ]; then
      echo
      echo "## bench_step: ${#SETTINGS[@]} settings"
      echo
      cat "$SCRATCH/bench_table.md"
    fi
    if [ -s "$SCRATCH/ctest_summary.txt" ]; then
      echo
      echo "## CUDA tests (ctest -L cuda)"
      echo
      echo '```'
      cat "$SCRATCH/ctest_summary.txt"
      echo '```'
    fi
    echo
    echo "Logs beside this file: ${PHASE_NAMES[*]/%/.log}, bench.json (every setting's bench_step report)"
  } > "$OUT/results.md"
}

finish() {
  local p name status secs note
  printf '\n=== summary (%d s of %d s%s) ===\n' "$(elapsed)" "$TOTAL_S" "$([ "$DRY_RUN" = 1 ] && echo ', as planned')"
  printf '%-8s %-6s %6s %6s  %s\n' phase status budget secs note
  for p in "${RECORDS[@]}"; do
    IFS='|' read -r name status secs note <<< "$p"
    printf '%-8s %-6s %6s %6s  %s\n' "$name" "$status" "${BUDGET[$name]}" "$secs" "$note"
  done
  if [ -s "$SCRATCH/bench_table.md" ]; then
    say ""
    cat "$SCRATCH/bench_table.md"
  fi
  write_results
  if [ -n "$OUT" ]; then say "results: $OUT/results.md (logs beside it)"; else say "logs: $LOGS"; fi
  rm -rf "$SCRATCH"
  if [ "$FAILED" != 0 ]; then say "gpu_check: FAILED (see above)"; exit 1; fi
  if [ "$DRY_RUN" = 1 ]; then say "gpu_check: dry run: inputs found, nothing verified"; exit 0; fi
  say "gpu_check: all phases passed"
  exit 0
}
ARGS_LINE="${OUT:+--out $OUT }--data ${DATA[*]:-none} --vocab $VOCAB --steps $STEPS --build-dir $BUILD_DIR$([ "$DRY_RUN" = 1 ] && echo ' --dry-run')"

# --- the phases ------------------------------------------------------------------

# The Python with torch that setup.sh builds against (the GPU machine's python3).
TORCH_PYTHON=python3
[ -x .venv/bin/python ] && TORCH_PYTHON=$PWD/.venv/bin/python
GPUS=0
BUILT=0
PREP_PID=""
SHARDS=$SCRATCH/shards

# Each command here is bounded by the phase's budget, not by its allowance:
# the machine phase only reports. A dry run does not import torch (seconds,
# tens of them on a loaded machine): it counts no GPU.
phase_machine() {
  start_phase machine "the machine, and what the CUDA build lacks"
  local limit=${BUDGET[machine]}
  {
    say "host: $(hostname), $(nproc) cores, $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}'), $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")"
    if command -v nvidia-smi >/dev/null; then
      timeout "$limit" nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    else
      say "nvidia-smi: not found"
    fi
    if command -v nvcc >/dev/null; then nvcc --version | tail -2
    elif [ -x /usr/local/cuda/bin/nvcc ]; then /usr/local/cuda/bin/nvcc --version | tail -2
    else say "nvcc: not found"; fi
    say "g++: $(g++ --version 2>/dev/null | head -1 || echo missing)"
    say "cmake: $(cmake --version 2>/dev/null | head -1 || echo missing); ninja: $(ninja --version 2>/dev/null || echo missing)"
    if [ "$DRY_RUN" = 1 ]; then
      say "torch: not imported in a dry run"
    else
      timeout "$limit" "$TORCH_PYTHON" - <<'EOF' || say "python: $TORCH_PYTHON cannot import torch"
import sys, torch
ok = torch.cuda.is_available()
print(f"python {sys.executable} {sys.version.split()[0]}: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, NCCL {'.'.join(map(str, torch.cuda.nccl.version())) if ok else '?'}")
print(f"torch.cuda.is_available() = {ok}, devices: {torch.cuda.device_count() if ok else 0}"
      + "".join(f"\n  cuda:{i} {torch.cuda.get_device_name(i)}, "
                f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB, sm_{''.join(map(str, torch.cuda.get_device_capability(i)))}"
                for i in range(torch.cuda.device_count() if ok else 0)))
EOF
    fi
    timeout "$limit" env CUDA=1 PACKAGES=check BUILD_DIR="$BUILD_DIR" launch/setup.sh
  } > >(tee -a "$LOGS/machine.log") 2>&1
  sleep 0.2  # let tee finish writing
  GPUS=$(sed -n 's/.*devices: \([0-9]*\).*/\1/p' "$LOGS/machine.log" | head -1)
  GPUS=${GPUS:-0}
  MACHINE_LINE=$(grep -m1 -E 'cuda:0 ' "$LOGS/machine.log" | sed 's/^ *//')
  MACHINE_LINE="${MACHINE_LINE:-no GPU}; $(grep -m1 '^python' "$LOGS/machine.log" | sed 's/^python [^ ]* /python /'); $(nproc) cores"
  local missing
  missing=$(sed -n 's/^setup: missing: //p' "$LOGS/machine.log")
  end_phase PASS "$GPUS GPU(s); packages missing: ${missing:-?}"
}

phase_setup() {
  start_phase setup "packages, configure $BUILD_DIR, build muonrun"
  local log=$LOGS/setup.log rc
  local cmd=(env CUDA=1 BUILD_TYPE=Release BUILD_DIR="$BUILD_DIR" TARGETS=muonrun launch/setup.sh)
  run_logged "$log" "$LIMIT" "${cmd[@]}"
  rc=$?
  if [ "$DRY_RUN" = 1 ]; then
    BUILT=1
    end_phase PASS "exit 3 (the package step failed) would be retried with PACKAGES=skip: WARN if it builds"
  elif [ "$rc" = 0 ]; then
    BUILT=1
    local warning
    warning=$(sed -n 's/^setup: WARNING: //p' "$log" 2>/dev/null | head -1)
    if [ -n "$warning" ]; then end_phase WARN "$warning; muonrun built all the same"
    else end_phase PASS "$BUILD_DIR configured (Release, sm_90a), muonrun built"; fi
  elif [ "$rc" = 3 ]; then
    # Only the package step failed: the same configure and build with what is
    # installed; the configure names a library the build cannot do without.
    local why
    why=$(grep -m1 -E '^setup: (apt|pip|no Python)' "$log" | sed 's/^setup: //')
    say "gpu_check: setup.sh's package step failed; building with what is installed (PACKAGES=skip)"
    if run_logged "$log" "$(allowance setup)" env PACKAGES=skip "${cmd[@]:1}"; then
      BUILT=1
      end_phase WARN "package step failed (${why:-setup.sh exit 3}); PACKAGES=skip built muonrun"
    else
      end_phase FAIL "package step failed (${why:-setup.sh exit 3}), and the build without it too (setup.log)"
    fi
  elif [ "$rc" = 124 ]; then
    end_phase FAIL "timed out after $LIMIT s (setup.log)"
  else
    end_phase FAIL "launch/setup.sh exit $rc (setup.log)"
  fi
}

# muonrun prepare in the background (PREP_PID), with the time until the bench
# must start; its output goes to data.log.
DATA_NOTE=""
start_prepare() {
  local train_in=() val_in=() f
  for f in "${DATA[@]}"; do
    case "$(basename "$f")" in val*) val_in+=("$f") ;; *) train_in+=("$f") ;; esac
  done
  if [ ${#train_in[@]} -eq 0 ]; then
    DATA_NOTE="no training input (--data, default data/gutenberg/*.jsonl.xz: GUTENBERG=1 launch/get_data.sh)"
    return
  fi
  if [ ! -s "$VOCAB/encoder.json" ] || [ ! -s "$VOCAB/vocab.bpe" ]; then
    DATA_NOTE="no vocabulary in $VOCAB (launch/get_data.sh)"
    return
  fi
  local threads=$(( $(nproc) / 2 > 2 ? $(nproc) / 2 : 2 ))  # the other half builds
  local args=(--input "${train_in[@]}" --out "$SHARDS" --vocab "$VOCAB" --threads "$threads")
  [ ${#val_in[@]} -gt 0 ] && args+=(--val-input "${val_in[@]}")
  local limit=$(( TOTAL_S - $(elapsed) - MINIMUM[bench] ))
  [ "$limit" -lt 1 ] && limit=1
  DATA_NOTE="${#train_in[@]} train + ${#val_in[@]} val file(s)"
  say "\$ $BUILD_DIR/trainer/muonrun prepare ${args[*]} &   (in the background, at most $limit s)"
  if [ "$DRY_RUN" = 1 ]; then PREP_PID=dry; return; fi
  timeout --kill-after=10 "$limit" "$BUILD_DIR/trainer/muonrun" prepare "${args[@]}" >> "$LOGS/data.log" 2>&1 &
  PREP_PID=$!
}

phase_build() {
  start_phase build "the rest of gpu_check_targets, muonrun prepare beside it"
  if [ "$BUILT" = 0 ]; then end_phase SKIP "no setup"; return; fi
  start_prepare
  resolve_targets
  say "targets: $TARGETS ($TARGETS_FROM)"
  # -k 0: a target that fails to compile leaves the others built (a broken
  # CUDA test still leaves the bench its binary).
  if run_logged "$LOGS/build.log" "$LIMIT" cmake --build "$BUILD_DIR" --target gpu_check_targets -- -k 0; then
    end_phase PASS "$TARGETS"
  else
    end_phase FAIL "cmake --build $BUILD_DIR --target gpu_check_targets (build.log)"
  fi
}

# The first test that crashed (SEGFAULT, or another signal), run again
# under cuda-gdb (the CUDA image's debugger; it debugs host code too) for
# the backtrace of every thread, into the tests log. At most 60 s.
backtrace_crashes() {
  local log=$1 name command
  name=$(grep -m1 -E 'Test +#[0-9]+: .*\*\*\*Exception' "$log" | sed -E 's/.*Test +#[0-9]+: //; s/ .*//')
  [ -n "$name" ] || return 0
  command -v cuda-gdb > /dev/null || { echo "(no cuda-gdb here: no backtrace of $name)" >> "$log"; return 0; }
  command=$(ctest --test-dir "$BUILD_DIR" -N -V -R "^${name}\$" | sed -n 's/^.*Test command: //p' | head -1)
  [ -n "$command" ] || return 0
  say "tests: $name crashed; its backtrace (cuda-gdb) goes to tests.log"
  {
    echo "=== backtrace of $name: cuda-gdb -batch --args $command"
    # shellcheck disable=SC2086  # the command line as ctest stores it
    timeout 60 cuda-gdb -q -batch -ex run -ex bt -ex 'thread apply all bt 12' --args $command 2>&1 | tail -150
  } >> "$log"
}

phase_tests() {
  start_phase tests "ctest -L cuda"
  if [ "$BUILT" = 0 ]; then end_phase SKIP "no setup"; return; fi
  local log=$LOGS/tests.log status=PASS note="" rc
  run_logged "$log" "$LIMIT" ctest --test-dir "$BUILD_DIR" -L cuda --output-on-failure --timeout "$LIMIT"
  rc=$?
  [ "$DRY_RUN" = 0 ] && backtrace_crashes "$log"
  [ "$rc" != 0 ] && status=FAIL
  if [ "$DRY_RUN" = 0 ]; then
    grep -E 'tests passed|Test +#|Not Run|\*\*\*' "$log" > "$SCRATCH/ctest_summary.txt" 2>/dev/null
    note=$(grep -m1 'tests passed' "$log" || echo "no ctest summary")
    [ "$rc" = 124 ] && note="timed out after $LIMIT s, $(grep -c 'Test *#' "$log") test(s) done; $note"
    # With one GPU only the CudaTwoRanks tests may skip ("needs 2 GPUs").
    local skipped bad
    skipped=$(grep '\*\*\*Skipped' "$log" | sed -E 's/.*Test +#[0-9]+: //; s/ .*//' | tr '\n' ' ')
    bad=$(printf '%s\n' $skipped | grep -v -e '^CudaTwoRanks\.' -e '^$' | tr '\n' ' ')  # word-split on purpose
    [ "$GPUS" -ge 2 ] && bad=$skipped
    if [ "$rc" != 124 ] && [ "$(grep -c 'Test *#' "$log")" = 0 ]; then
      status=FAIL note="no CUDA tests found (built without CUDA?)"
    fi
    if [ -n "$bad" ]; then status=FAIL; note="$note; skipped on a GPU machine: ${bad% }"
    elif [ -n "$skipped" ]; then note="$note; skipped (need 2 GPUs): ${skipped% }"; fi
  fi
  end_phase "$status" "$note"
}

phase_data() {
  start_phase data "muonrun prepare (started in the build phase)"
  if [ -z "$PREP_PID" ] && [ -n "$DATA_NOTE" ]; then end_phase FAIL "$DATA_NOTE"; return; fi
  if [ -z "$PREP_PID" ]; then end_phase SKIP "no muonrun"; return; fi
  if [ "$PREP_PID" = dry ]; then end_phase PASS "$DATA_NOTE"; return; fi
  if wait "$PREP_PID"; then
    end_phase PASS "$DATA_NOTE -> $(ls "$SHARDS" | wc -l) shards, $(du -sh "$SHARDS" | cut -f1)"
  else
    local rc=$?
    PREP_PID=""
    end_phase FAIL "muonrun prepare exit $rc$([ "$rc" = 124 ] && echo ': timed out') (data.log)"
  fi
}

# Timed steps that fit SHARE seconds at STEP_S a step after START_S of start,
# between MIN_STEPS and STEPS.
fit_steps() {
  awk -v share="$1" -v start="$2" -v step="$3" -v warmup="$WARMUP" -v lo="$MIN_STEPS" -v hi="$STEPS" \
    'BEGIN { n = int((share - start) / step) - warmup; if (n > hi) n = hi; if (n < lo) n = lo; print n }'
}

phase_bench() {
  start_phase bench "bench_step, ${#SETTINGS[@]} settings"
  local bench=$BUILD_DIR/bench/bench_step
  if [ -z "$PREP_PID" ]; then end_phase SKIP "no shards"; return; fi
  if [ "$DRY_RUN" = 0 ] && [ ! -x "$bench" ]; then end_phase SKIP "no $bench"; return; fi
  local n=${#SETTINGS[@]} i=0 setting name config sets overrides o steps limit share t0 wall json plan failed=() reports=()
  local step_s=$GUESS_STEP_S start_s=$GUESS_START_S from="a guess of $GUESS_STEP_S s a step and $GUESS_START_S s to start"
  local setting_min=$(( MINIMUM[bench] / n ))
  for setting in "${SETTINGS[@]}"; do
    IFS='|' read -r name config sets <<< "$setting"
    read -r -a sets <<< "$sets"
    overrides=()
    for o in "${sets[@]}"; do overrides+=(--set "$o"); done
    share=$(( (TOTAL_S - $(elapsed)) / (n - i) ))
    limit=$(( TOTAL_S - $(elapsed) - (n - i - 1) * setting_min ))
    [ "$limit" -lt 1 ] && limit=1
    steps=$(fit_steps "$share" "$start_s" "$step_s")
    plan="$steps steps after $WARMUP warm-up in about $share s, from $from"
    [ "$steps" -lt "$STEPS" ] && plan="$plan: shortened from $STEPS steps to fit"
    say ""
    say "--- setting $((i + 1))/$n: $name: $plan"
    json=$SCRATCH/bench_$i.json
    t0=$(date +%s)
    echo "=== $name: $plan" >> "$LOGS/bench.log"
    if run_logged "$LOGS/bench.log" "$limit" "$bench" -c "$config" \
        --set "data.train=$SHARDS/train_*.bin" --set "data.val=$SHARDS/val_*.bin" --set run.device=cuda \
        "${overrides[@]}" --steps "$steps" --warmup "$WARMUP" --json "$json"; then
      wall=$(( $(date +%s) - t0 ))
      if [ "$DRY_RUN" = 0 ] && [ -s "$json" ]; then
        # The next settings' plan: this one's measured step, the rest of its wall time as start.
        step_s=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step_ms_mean"] / 1e3)' "$json")
        start_s=$(awk -v w="$wall" -v s="$step_s" -v k=$(( steps + WARMUP )) 'BEGIN { x = w - s * k; printf "%d", (x > 5 ? x : 5) }')
        from="setting $((i + 1))'s measured $(printf '%.2f' "$step_s") s a step and $start_s s to start"
      fi
    else
      failed+=("$name")
    fi
    reports+=("$name=$json")
    i=$(( i + 1 ))
    PLANNED=$(( PLANNED + share ))
  done
  if [ "$DRY_RUN" = 1 ]; then
    say "\$ bench/step_table.py --json-out $LOGS/bench.json ${reports[*]}"
    end_phase PASS "${n} settings; the later ones' steps come from the first one's measured time"
    return
  fi
  python3 bench/step_table.py --json-out "$LOGS/bench.json" "${reports[@]}" > "$SCRATCH/bench_table.md" ||
    failed+=("bench/step_table.py")
  cat "$SCRATCH/bench_table.md"
  if [ ${#failed[@]} -gt 0 ]; then end_phase FAIL "failed: ${failed[*]} (bench.log)"
  else end_phase PASS "$n settings (the table below; bench.json)"; fi
}

print_plan
phase_machine
if [ "$GPUS" = 0 ] && [ "$DRY_RUN" = 0 ]; then
  say ""
  say "no GPU: nothing verified (torch.cuda.is_available() is false or nvidia-smi finds none)"
  say "gpu_check: --dry-run shows what would run"
  rm -rf "$SCRATCH"
  [ -n "$OUT" ] && printf '\nno GPU: nothing verified\n' >> "$OUT/results.md"
  exit 1
fi
phase_setup
phase_build
phase_tests
phase_data
phase_bench
finish
