#!/usr/bin/env bash
# Data-parallel training over several nodes with torchrun: run this on EVERY
# node, with the same MASTER_ADDR (a host name or address of node 0).
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node1 launch/multi_node_torchrun.sh -c configs/speedrun.yaml   # on node1
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node1 launch/multi_node_torchrun.sh -c configs/speedrun.yaml   # on node2
#
# torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
# MASTER_PORT for each muonrun process; the ranks meet in a c10d TCPStore on
# MASTER_ADDR:MASTER_PORT and exchange the NCCL id there.
set -euo pipefail
cd "$(dirname "$0")/.."
exec torchrun --nnodes "${NNODES:?}" --node-rank "${NODE_RANK:?}" --nproc-per-node "${GPUS_PER_NODE:-8}" \
  --master-addr "${MASTER_ADDR:?}" --master-port "${MASTER_PORT:-29500}" \
  --no-python build/trainer/muonrun train "$@"
