// Choosing the device a rank trains on.
#pragma once

#include <torch/torch.h>

#include <string>

#include "trainer/run/run_config.h"

namespace muonrun {

// run.device: "cpu", "cuda" (the local rank's GPU, gpu_for_local_rank) or
// "auto" (cuda when available, else cpu). "cuda" in a build without CUDA is a
// ConfigError naming the key and the binary; with no GPU visible, an error.
// A GPU it returns is also made the current device.
torch::Device resolve_device(RunDevice setting, int local_rank);

// The GPU index of a local rank among `visible` GPUs: its own number, or the
// only one when a scheduler shows each task just its own GPU (Slurm's
// --gpus-per-task=1). Throws when the rank has no GPU.
int gpu_for_local_rank(int local_rank, int visible);

// Prepares the host side for training: `threads` intra-op threads (0: the
// machine's cores divided among `ranks_on_node`), and a malloc that keeps freed
// memory for reuse. The second matters on the CPU: glibc returns every block
// above 32 MB (the [tokens x 50304] logits) to the kernel on free, and page
// faults on the next step then cost more than the arithmetic.
void configure_host(int64_t threads, int ranks_on_node);

// Waits for the device's queued work, so that host clocks measure it.
void synchronize(const torch::Device& device);

}  // namespace muonrun
