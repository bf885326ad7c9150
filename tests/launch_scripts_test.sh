#!/usr/bin/env bash
# The launch scripts choose the binary a GPU node needs, and the CPU build
# refuses a GPU config instead of training on the host:
#   - single_node.sh, multi_node_torchrun.sh, multi_node_mpirun.sh and
#     slurm.sbatch run build-cuda/trainer/muonrun on a node with a GPU (a
#     fake nvidia-smi lists one), build/trainer/muonrun without one or
#     without the CUDA build, and $MUONRUN when it is set (fake launchers
#     print the command they were given);
#   - the CPU build given configs/speedrun.yaml (run.device: cuda) exits 1
#     with a message naming run.device and the binary, before any data is read.
#
#   launch_scripts_test.sh SOURCE_DIR CPU_BUILD_MUONRUN
set -euo pipefail
src=$1 cpu_binary=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/muonrun_launch_test.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/checkout
mkdir -p "$root/build/trainer" "$root/build-cuda/trainer" "$work/bin"
cp -r "$src/launch" "$root/"
for build in build build-cuda; do
  printf '#!/bin/sh\necho "%s ran"\n' "$build" > "$root/$build/trainer/muonrun"
  chmod +x "$root/$build/trainer/muonrun"
done
for launcher in mpirun torchrun srun; do
  printf '#!/bin/sh\necho "%s $*"\n' "$launcher" > "$work/bin/$launcher"
done
printf '#!/bin/sh\n[ "$FAKE_GPUS" = 1 ] || exit 9\necho "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n' > "$work/bin/nvidia-smi"
printf '#!/bin/sh\necho node-a\n' > "$work/bin/scontrol"
echo "node-a slots=1" > "$work/hosts"
chmod +x "$work"/bin/*

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run_script GPUS SCRIPT ARGS...: the script's output (the fake launcher's line).
run_script() {
  local gpus=$1 script=$2
  shift 2
  (cd "$root" && env PATH="$work/bin:$PATH" FAKE_GPUS="$gpus" NNODES=1 NODE_RANK=0 MASTER_ADDR=node-a \
     HOSTFILE="$work/hosts" GPUS_PER_NODE=1 GLOO_SOCKET_IFNAME=lo NCCL_SOCKET_IFNAME=lo \
     SLURM_JOB_NODELIST=node-a bash "launch/$script" "$@" 2> "$work/stderr")
}

# expect SCRIPT ARGS...: with and without a GPU, and with MUONRUN.
expect() {
  local script=$1 out
  shift
  out=$(run_script 1 "$script" "$@")
  [[ $out == *"$root/build-cuda/trainer/muonrun train -c configs/speedrun.yaml"* ]] ||
    fail "$script on a GPU node ran: $out"
  out=$(run_script 0 "$script" "$@")
  [[ $out == *"$root/build/trainer/muonrun train -c configs/speedrun.yaml"* ]] ||
    fail "$script on a node without a GPU ran: $out"
  out=$(MUONRUN=/opt/muonrun run_script 1 "$script" "$@")
  [[ $out == *"/opt/muonrun train -c configs/speedrun.yaml"* ]] || fail "$script with MUONRUN ran: $out"
  echo "ok: $script"
}
expect single_node.sh 1 -c configs/speedrun.yaml
expect multi_node_torchrun.sh -c configs/speedrun.yaml
expect multi_node_mpirun.sh -c configs/speedrun.yaml
expect slurm.sbatch -c configs/speedrun.yaml

# A GPU node without the CUDA build runs the CPU build, and says why.
rm -r "$root/build-cuda"
out=$(run_script 1 single_node.sh 1 -c configs/speedrun.yaml)
[[ $out == *"$root/build/trainer/muonrun train"* ]] || fail "without build-cuda ran: $out"
grep -q "CUDA=1 launch/setup.sh" "$work/stderr" || fail "without build-cuda, stderr: $(cat "$work/stderr")"
echo "ok: a GPU node without the CUDA build"

# The CPU build refuses a CUDA config by key and binary, before reading data.
set +e
"$cpu_binary" train -c "$src/configs/speedrun.yaml" --set "run.dir=$work/run" > "$work/out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || fail "the CPU build on configs/speedrun.yaml exited $rc (expected 1)"
grep -q "run.device is cuda" "$work/out" || fail "no 'run.device is cuda' in: $(cat "$work/out")"
grep -qF "$(readlink -f "$cpu_binary")" "$work/out" || fail "the binary is not named in: $(cat "$work/out")"
grep -qi "fineweb\|shard" "$work/out" && fail "it read data first: $(cat "$work/out")"
[ -e "$work/run/metrics.jsonl" ] && fail "it started training"
echo "ok: the CPU build refuses run.device=cuda: $(grep -m1 'run.device' "$work/out")"

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "launch scripts: all passed"
