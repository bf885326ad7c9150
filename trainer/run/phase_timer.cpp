#include "trainer/run/phase_timer.h"

#include <chrono>
#include <stdexcept>

namespace muonrun {

#ifdef MUONRUN_WITH_CUDA
// trainer/cuda_phase_timer.cpp
std::unique_ptr<PhaseTimer> make_cuda_phase_timer(const torch::Device& device);
#endif

namespace {

class CpuPhaseTimer : public PhaseTimer {
 public:
  void begin(Phase phase) override { start_[index(phase)] = Clock::now(); }
  void end(Phase phase) override {
    const size_t i = index(phase);
    times_[i] += std::chrono::duration<double, std::milli>(Clock::now() - start_[i]).count();
  }
  PhaseTimes take() override {
    PhaseTimes out = times_;
    times_.fill(0);
    return out;
  }
  const char* clock() const override { return "steady_clock"; }

 private:
  using Clock = std::chrono::steady_clock;
  static size_t index(Phase phase) { return static_cast<size_t>(phase); }
  std::array<Clock::time_point, kPhaseCount> start_{};
  PhaseTimes times_{};
};

}  // namespace


std::unique_ptr<PhaseTimer> make_phase_timer(const torch::Device& device) {
  if (!device.is_cuda()) return std::make_unique<CpuPhaseTimer>();
#ifdef MUONRUN_WITH_CUDA
  return make_cuda_phase_timer(device);
#else
  throw std::runtime_error("a CUDA phase timer needs muonrun built with CUDA (MUONRUN_CUDA=ON)");
#endif
}

}  // namespace muonrun
