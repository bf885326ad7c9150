// CPU collectives through LibTorch's c10d ProcessGroupGloo, for CPU runs
// launched by torchrun or Slurm without MPI: the ranks already meet in a c10d
// TCPStore, which Gloo uses to connect. GLOO_SOCKET_IFNAME picks the network
// interface, as in torch.distributed; a job that spans several hosts
// (`spans_hosts`: the local world is smaller than the world) is refused when
// Gloo would bind to loopback, naming the variable to set.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>

#include "comm/communicator.h"

namespace muonrun {

// Throws, naming GLOO_SOCKET_IFNAME and this host's interfaces, when Gloo
// would bind to loopback in a job that spans several hosts, or when
// GLOO_SOCKET_IFNAME names no interface here. World calls it before the
// rendezvous, so that no rank waits for one that is refused.
void check_gloo_interface(bool spans_hosts);

// The Gloo communicator over `store`, on the interface check_gloo_interface
// has accepted.
std::unique_ptr<Communicator> make_gloo_communicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                     std::chrono::milliseconds timeout);

}  // namespace muonrun
