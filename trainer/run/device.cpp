#include "trainer/run/device.h"

#include <ATen/DeviceAccelerator.h>
#include <malloc.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "trainer/base/config_error.h"

namespace muonrun {

int gpu_for_local_rank(int local_rank, int visible) {
  if (local_rank < visible) return local_rank;
  // A scheduler that binds one GPU per task (Slurm's --gpus-per-task=1 or
  // --gpu-bind) shows each rank only its own GPU, as device 0.
  if (visible == 1) return 0;
  throw std::runtime_error("local rank " + std::to_string(local_rank) + " needs GPU " + std::to_string(local_rank) +
                           " but only " + std::to_string(visible) +
                           " are visible (check CUDA_VISIBLE_DEVICES and ranks per node)");
}

std::string executable_path() {
  std::error_code error;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string("this muonrun") : path.string();
}

torch::Device resolve_device(RunDevice setting, int local_rank) {
#ifndef MUONRUN_WITH_CUDA
  // Never a quiet CPU run of a GPU config: the user asked for a GPU.
  if (setting == RunDevice::cuda)
    throw ConfigError("run.device is cuda, but " + executable_path() +
                      " was built without CUDA (MUONRUN_CUDA=OFF): run the CUDA build, "
                      "build-cuda/trainer/muonrun (CUDA=1 launch/setup.sh), or set run.device=cpu");
#endif
  const bool cuda = torch::cuda::is_available();
  switch (setting) {
    case RunDevice::cpu: return torch::kCPU;
    case RunDevice::automatic: if (!cuda) return torch::kCPU; break;
    case RunDevice::cuda: break;
  }
  if (!cuda)
    throw std::runtime_error("run.device is cuda, but no GPU is visible to " + executable_path() +
                             " (torch::cuda::is_available() is false: check the driver and CUDA_VISIBLE_DEVICES)");
  const int count = static_cast<int>(torch::cuda::device_count());
  const int gpu = gpu_for_local_rank(local_rank, count);
  if (gpu != local_rank)
    spdlog::info("local rank {} sees one GPU: using it (the scheduler binds one GPU per task)", local_rank);
  // This rank's GPU becomes the current device of the process, so that every
  // stream, event and context (c10d's watchdog thread included) is taken on
  // it rather than on GPU 0.
  const auto index = static_cast<c10::DeviceIndex>(gpu);
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
