#!/usr/bin/env bash
# Data-parallel training over several nodes with mpirun and a hostfile.
#
#   HOSTFILE=hosts GPUS_PER_NODE=8 launch/multi_node_mpirun.sh -c configs/speedrun.yaml
#
# hosts lists one node per line with its slots, e.g. "node1 slots=8". Every
# node needs the same build at the same path and a shared run directory
# (checkpoints are written by all ranks into runs/<name>/). NCCL picks the
# network itself; set NCCL_SOCKET_IFNAME / NCCL_IB_HCA to choose interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
hostfile=${HOSTFILE:?set HOSTFILE to an Open MPI hostfile}
gpus=${GPUS_PER_NODE:-8}
nodes=$(grep -cve '^\s*\(#\|$\)' "$hostfile")
exec mpirun -np $((nodes * gpus)) --hostfile "$hostfile" --map-by "ppr:${gpus}:node" --bind-to none \
  -x PATH -x LD_LIBRARY_PATH -x NCCL_DEBUG -x NCCL_SOCKET_IFNAME -x NCCL_IB_HCA \
  "$PWD/build/trainer/muonrun" train "$@"
