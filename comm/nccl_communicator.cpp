#include "comm/nccl_communicator.h"

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "comm/c10d_communicator.h"

namespace muonrun {

std::unique_ptr<Communicator> make_nccl_communicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                     const torch::Device& device,
                                                     std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create(/*is_high_priority_stream=*/true);
  options->timeout = timeout;
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(std::move(store), rank, size, options);
  // Bind the communicator to this rank's GPU now (ncclCommInitRank on it),
  // rather than letting c10d guess a device from the rank on first use.
  group->setBoundDeviceId(device);
  group->eagerConnectSingleDevice(device);
  return std::make_unique<C10dCommunicator>(group, "nccl", device, /*averages=*/true);
}

}  // namespace muonrun
