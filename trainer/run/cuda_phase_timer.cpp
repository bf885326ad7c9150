// The CUDA-event PhaseTimer (CUDA builds only; see trainer/base/phase_timer.h).
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <deque>
#include <vector>

#include "trainer/run/phase_timer.h"

namespace muonrun {

namespace {

// Events are recorded on the current stream of the timer's device and kept
// for reuse: a step records a few dozen, and creating events costs more than
// recording them.
class CudaPhaseTimer : public PhaseTimer {
 public:
  explicit CudaPhaseTimer(const torch::Device& device) : device_(device.index()) {}

  void begin(Phase phase) override {
    open_[index(phase)] = record();
  }

  void end(Phase phase) override {
    const size_t i = index(phase);
    intervals_.push_back({i, open_[i], record()});
  }

  PhaseTimes take() override {
    PhaseTimes out{};
    if (used_ > 0) events_[used_ - 1].synchronize();  // the last one recorded
    for (const auto& interval : intervals_)
      out[interval.phase] += static_cast<double>(events_[interval.start].elapsed_time(events_[interval.end]));
    intervals_.clear();
    used_ = 0;
    return out;
  }

  const char* clock() const override { return "cuda_events"; }

 private:
  struct Interval {
    size_t phase, start, end;  // indices into events_
  };
  static size_t index(Phase phase) { return static_cast<size_t>(phase); }

  size_t record() {
    if (used_ == events_.size()) events_.emplace_back(cudaEventDefault);  // timing enabled
    events_[used_].record(c10::cuda::getCurrentCUDAStream(device_));
    return used_++;
  }

  c10::DeviceIndex device_;
  std::deque<c10::cuda::CUDAEvent> events_;
  size_t used_ = 0;
  std::array<size_t, kPhaseCount> open_{};
  std::vector<Interval> intervals_;
};

}  // namespace

std::unique_ptr<PhaseTimer> make_cuda_phase_timer(const torch::Device& device) {
  return std::make_unique<CudaPhaseTimer>(device);
}

}  // namespace muonrun
