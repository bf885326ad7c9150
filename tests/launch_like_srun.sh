#!/usr/bin/env bash
# Starts N copies of a command with the environment torchrun --nproc-per-node N
# --no-python would give them, and fails if any copy fails.
#   tests/launch_like_torchrun.sh N command [args...]
set -u
n=$1; shift
port=$((20000 + RANDOM % 20000))
pids=()
for ((r = 0; r < n; r++)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    OMP_WAIT_POLICY=PASSIVE "$@" &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail
