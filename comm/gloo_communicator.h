// CPU collectives through LibTorch's c10d ProcessGroupGloo, for CPU runs
// launched by torchrun or Slurm without MPI: the ranks already meet in a c10d
// TCPStore, which Gloo uses to connect. GLOO_SOCKET_IFNAME picks the network
// interface, as in torch.distributed.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>

#include "comm/communicator.h"

namespace muonrun {

std::unique_ptr<Communicator> make_gloo_communicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                     std::chrono::milliseconds timeout);

}  // namespace muonrun
