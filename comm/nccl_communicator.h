// Collectives on CUDA tensors with NCCL (CUDA builds only).
//
// Collectives run on a stream of their own. Before each one the
// communication stream waits for an event recorded on the caller's current
// stream (so it sees the finished gradients); Work::wait() makes the caller's
// stream wait for the collective's event. Neither blocks the host, so
// backward keeps queueing kernels while gradients travel.
//
// A watchdog thread polls NCCL for asynchronous errors and checks that every
// collective finishes within the timeout; otherwise it aborts the NCCL
// communicator (which releases every wait on it) and ends the process with a
// message, instead of letting the job hang on a dead or stuck rank.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>

#include "comm/communicator.h"

namespace muonrun {

// The NCCL unique id travels through MPI (mpirun) ...
std::unique_ptr<Communicator> make_nccl_communicator_mpi(int rank, int size, const torch::Device& device,
                                                         std::chrono::milliseconds timeout);
// ... or through the c10d store (torchrun, srun).
std::unique_ptr<Communicator> make_nccl_communicator_store(const c10::intrusive_ptr<c10d::Store>& store,
                                                           int rank, int size, const torch::Device& device,
                                                           std::chrono::milliseconds timeout);

}  // namespace muonrun
