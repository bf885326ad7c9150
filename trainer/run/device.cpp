#include "trainer/run/device.h"

#include <ATen/DeviceAccelerator.h>
#include <malloc.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace muonrun {

torch::Device resolve_device(RunDevice setting, int local_rank) {
  const bool cuda = torch::cuda::is_available();
  switch (setting) {
    case RunDevice::cpu: return torch::kCPU;
    case RunDevice::automatic: if (!cuda) return torch::kCPU; break;
    case RunDevice::cuda: break;
  }
  if (!cuda)
    throw std::runtime_error("run.device=cuda, but this LibTorch has no CUDA or no GPU is visible");
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (local_rank >= count)
    throw std::runtime_error("local rank " + std::to_string(local_rank) + " needs GPU " +
                             std::to_string(local_rank) + " but only " + std::to_string(count) +
                             " are visible (check CUDA_VISIBLE_DEVICES and ranks per node)");
  // This rank's GPU becomes the current device of the process, so that every
  // stream, event and context (c10d's watchdog thread included) is taken on
  // it rather than on GPU 0.
  const auto index = static_cast<c10::DeviceIndex>(local_rank);
  at::accelerator::setDeviceIndex(index);
  return torch::Device(torch::kCUDA, index);
}

void configure_host(int64_t threads, int ranks_on_node) {
  mallopt(M_MMAP_MAX, 0);                // large blocks come from the heap ...
  mallopt(M_TRIM_THRESHOLD, -1);         // ... and stay there after free
  if (threads == 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, cores / std::max(1, ranks_on_node));
  }
  at::set_num_threads(static_cast<int>(threads));
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace muonrun
