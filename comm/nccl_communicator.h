// GPU collectives through LibTorch's c10d ProcessGroupNCCL (CUDA builds
// only). Its watchdog enforces comm.timeout_s on every collective and, by
// c10d's default (TORCH_NCCL_ASYNC_ERROR_HANDLING=3), aborts the
// communicator and ends the process when one times out or NCCL reports an
// error, instead of letting the job hang on a dead or stuck rank.
// Collectives run on c10d's NCCL stream for the device, which first waits for
// the caller's current stream; Work::wait() makes the caller's stream wait in
// turn. Neither blocks the host.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>

#include <chrono>
#include <memory>

#include "comm/communicator.h"

namespace muonrun {

// `device` is this rank's GPU, already made the current device.
std::unique_ptr<Communicator> make_nccl_communicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                     const torch::Device& device,
                                                     std::chrono::milliseconds timeout);

}  // namespace muonrun
