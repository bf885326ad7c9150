#!/usr/bin/env bash
# Starts N copies of a command with the environment `srun --ntasks N` gives
# its tasks on one node (plus the MASTER_ADDR / MASTER_PORT that
# launch/slurm.sbatch exports), and fails if any copy fails: rank 0 then
# hosts the c10d TCPStore itself (under torchrun the agent does).
#   tests/launch_like_srun.sh N command [args...]
set -u
n=$1; shift
port=$((20000 + RANDOM % 20000))
pids=()
for ((r = 0; r < n; r++)); do
  SLURM_PROCID=$r SLURM_NTASKS=$n SLURM_LOCALID=$r SLURM_NTASKS_PER_NODE=$n SLURM_JOB_ID=$$ \
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port OMP_WAIT_POLICY=PASSIVE "$@" &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail
