#!/usr/bin/env bash
# Data-parallel training on one node with N GPUs (or N CPU ranks), one rank per GPU.
#
#   launch/single_node.sh 8 -c configs/speedrun.yaml [--set key=value ...]
#
# Uses mpirun; rank r takes GPU r (its local rank). The binary is the CUDA
# build where this node has a GPU, else the CPU build; MUONRUN overrides it
# (launch/muonrun_binary.sh). The same job under torchrun:
#   torchrun --standalone --nproc-per-node 8 --no-python build-cuda/trainer/muonrun train -c configs/speedrun.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: launch/single_node.sh N [muonrun train options]}
shift
# CPU runs: idle OpenMP threads should sleep, not spin against busy ones.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
. launch/muonrun_binary.sh
binary=$(muonrun_binary "$PWD")
exec mpirun -np "$n" --bind-to none -x OMP_WAIT_POLICY -x NCCL_DEBUG \
  "$binary" train "$@"
