// The phase timers of trainer/base/phase_timer.h: steady_clock on the CPU,
// CUDA events on a GPU (trainer/run/cuda_phase_timer.cpp, CUDA builds only).
#pragma once

#include <torch/torch.h>

#include <memory>

#include "trainer/base/phase_timer.h"

namespace muonrun {

// A timer for `device`: CUDA events for a CUDA device (throws when muonrun
// was built without CUDA), steady_clock otherwise.
std::unique_ptr<PhaseTimer> make_phase_timer(const torch::Device& device);

}  // namespace muonrun
