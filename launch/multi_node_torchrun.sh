#!/usr/bin/env bash
# Data-parallel training over several nodes with torchrun: run this on EVERY
# node, with the same MASTER_ADDR (an address of node 0 that the others reach).
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 launch/multi_node_torchrun.sh -c configs/speedrun.yaml   # on node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 launch/multi_node_torchrun.sh -c configs/speedrun.yaml   # on node 1
#
# torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
# MASTER_PORT for each muonrun process; the ranks meet in a c10d TCPStore on
# MASTER_ADDR:MASTER_PORT and exchange the NCCL id there. GLOO_SOCKET_IFNAME
# and NCCL_SOCKET_IFNAME default to the interface that routes to MASTER_ADDR
# (launch/socket_ifname.sh); given ones are checked. GPUS_PER_NODE (8) ranks
# per node; TORCHRUN and MUONRUN override the programs (the binary is the
# CUDA build where this node has a GPU, else the CPU build:
# launch/muonrun_binary.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. launch/socket_ifname.sh
. launch/muonrun_binary.sh
set_socket_ifnames "${MASTER_ADDR:?set MASTER_ADDR to an address of node 0}"
binary=$(muonrun_binary "$PWD")
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "${TORCHRUN:-torchrun}" --nnodes "${NNODES:?}" --node-rank "${NODE_RANK:?}" \
  --nproc-per-node "${GPUS_PER_NODE:-8}" --master-addr "$MASTER_ADDR" --master-port "${MASTER_PORT:-29500}" \
  --no-python "$binary" train "$@"
