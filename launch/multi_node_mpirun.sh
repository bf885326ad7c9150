#!/usr/bin/env bash
# Data-parallel training over several nodes with mpirun and a hostfile.
#
#   HOSTFILE=hosts GPUS_PER_NODE=8 launch/multi_node_mpirun.sh -c configs/speedrun.yaml
#
# hosts lists one node per line with its slots, e.g. "node1 slots=8". Every
# node needs the same build at the same path and a shared run directory
# (checkpoints are written by all ranks into runs/<name>/). NCCL_SOCKET_IFNAME
# (and NCCL_IB_HCA) choose NCCL's network; when unset it is set to the
# interface of this node that routes to the hostfile's last node
# (launch/socket_ifname.sh), a given one is checked, and either is passed to
# every rank (name the interfaces alike on all nodes, or set it yourself).
# CPU ranks talk MPI, over the interfaces Open MPI chooses (--mca
# btl_tcp_if_include to pick). MPIRUN_ARGS adds mpirun options (e.g. --mca
# plm_rsh_agent for a launcher other than ssh); MUONRUN overrides the binary
# (by default the CUDA build where this node has a GPU, else the CPU build:
# launch/muonrun_binary.sh; every node runs the same one).
set -euo pipefail
cd "$(dirname "$0")/.."
. launch/socket_ifname.sh
. launch/muonrun_binary.sh
hostfile=${HOSTFILE:?set HOSTFILE to an Open MPI hostfile}
gpus=${GPUS_PER_NODE:-8}
nodes=$(grep -cve '^\s*\(#\|$\)' "$hostfile")
last_node=$(grep -ve '^\s*\(#\|$\)' "$hostfile" | tail -n 1 | awk '{ print $1 }')
set_socket_ifnames "$last_node" NCCL_SOCKET_IFNAME
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
binary=$(muonrun_binary "$PWD")
# After a communication failure muonrun ends this mpirun and the remote
# orted itself (comm/world.h, World::abort): over a cut link Open MPI's own
# abort would wait minutes for TCP to give up.
forward=()
for variable in PATH LD_LIBRARY_PATH OMP_WAIT_POLICY NCCL_DEBUG NCCL_SOCKET_IFNAME NCCL_IB_HCA; do
  [ -n "${!variable:-}" ] && forward+=(-x "$variable")
done
# shellcheck disable=SC2086
exec mpirun -np $((nodes * gpus)) --hostfile "$hostfile" --map-by "ppr:${gpus}:node" --bind-to none \
  "${forward[@]}" ${MPIRUN_ARGS:-} "$binary" train "$@"
