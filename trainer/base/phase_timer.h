// Where the time of a training step goes, for bench_step. The training step
// (trainer/run/train_step.h) and Optimizer::step report the phases below to an
// optional PhaseTimer; normal training passes none (nullptr), which costs one
// pointer test per phase.
//
//   data          next batch: loader, pinned copy, host-to-device transfer
//   forward       model->loss of every micro-batch
//   backward      backward of every micro-batch (the reducer's hooks launch
//                 collectives from inside it), end_backward
//   newton_schulz Muon's matrix updates: momentum, Newton-Schulz, apply
//   adamw         adam.step (or its parts in the steepest-descent variants)
//   comm_wait     waiting for collectives: gradient buckets and shards, the
//                 owners' all-gathers, the step's one scalar all-reduce
//
// The interface only (no LibTorch), so that optim/ can report to it; the
// timers are in trainer/run/phase_timer.h. CPU: host steady_clock. CUDA (MUONRUN_WITH_CUDA): a pair of CUDA events on
// the current stream per interval, so a phase is the GPU time between the
// points where the host queued its start and its end (a comm_wait is the time
// the compute stream stood waiting for the NCCL stream).
#pragma once

#include <array>
#include <cstddef>

namespace muonrun {
enum class Phase { Data, Forward, Backward, NewtonSchulz, AdamW, CommWait, Count };
constexpr size_t kPhaseCount = static_cast<size_t>(Phase::Count);

// "data", "forward", "backward", "newton_schulz", "adamw", "comm_wait".
inline const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::Data: return "data";
    case Phase::Forward: return "forward";
    case Phase::Backward: return "backward";
    case Phase::NewtonSchulz: return "newton_schulz";
    case Phase::AdamW: return "adamw";
    case Phase::CommWait: return "comm_wait";
    case Phase::Count: break;
  }
  return "?";
}

// Milliseconds per phase.
using PhaseTimes = std::array<double, kPhaseCount>;

class PhaseTimer {
 public:
  virtual ~PhaseTimer() = default;
  // One interval of `phase`; phases may nest (each phase has at most one
  // open interval), a phase's intervals add up.
  virtual void begin(Phase phase) = 0;
  virtual void end(Phase phase) = 0;
  // The time of each phase since the previous take() (or the start), waiting
  // for the device's queued work first; starts the next period.
  virtual PhaseTimes take() = 0;
  // "steady_clock" or "cuda_events", for reports.
  virtual const char* clock() const = 0;
};

// Times one phase for the scope's lifetime; does nothing without a timer.
class PhaseScope {
 public:
  PhaseScope(PhaseTimer* timer, Phase phase) : timer_(timer), phase_(phase) {
    if (timer_) timer_->begin(phase_);
  }
  ~PhaseScope() {
    if (timer_) timer_->end(phase_);
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  PhaseTimer* timer_;
  Phase phase_;
};

}  // namespace muonrun
