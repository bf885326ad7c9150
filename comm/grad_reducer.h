// Gradient reduction overlapped with backward (as in KellerJordan/modded-nanogpt
// records 23-24, train_gpt2.py, and per layer in karpathy/llm.c).
//
// Parameters are grouped into units:
//   bucket  parameters totalling about comm.bucket_mb, all-reduced to their
//           mean (AdamW parameters; every matrix too when Muon is replicated)
//   shard   `world` matrices of one size, reduce-scattered to their mean so
//           rank r receives the gradient of the matrix in slot r, the one it
//           owns (owner-distributed Muon); empty slots are zero padding
// A hook on each parameter's gradient accumulator marks the parameter ready
// during the last micro-step's backward; a unit starts its collective as soon
// as it is complete and all units before it in the launch order have
// started. Launching strictly in order makes every rank issue the same
// collectives in the same sequence, even when a parameter gets no gradient
// (end_backward() then starts what is left, with zeros for the missing
// gradients). The launch order starts as the reverse of registration (the
// order backward usually produces) and is replaced after the first step by
// the order rank 0 observed, as DDP does.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace muonrun {

struct GradientUnit {
  enum class Kind { Bucket, Shard };
  Kind kind;
  // Bucket: the parameters (indices into the reducer's list).
  // Shard: one per rank, the parameter in that rank's slot or -1 for padding;
  //        all parameters of a shard have the same number of elements.
  std::vector<int> params;
};

// Splits `params` (indices, in the order their gradients become ready) into
// buckets of at most `bucket_bytes` (a larger parameter gets one of its own).
std::vector<GradientUnit> plan_buckets(const std::vector<torch::Tensor>& all_params,
                                       const std::vector<int>& params, int64_t bucket_bytes);

class GradientReducer {
 public:
  // `params`: every trainable parameter, in registration order. `units` must
  // cover each parameter exactly once.
  // Unfinished work is only dropped when a run fails; each Work then keeps
  // its buffers alive itself, so destruction never waits on other ranks.
  GradientReducer(Communicator& comm, std::vector<torch::Tensor> params, std::vector<GradientUnit> units);

  // Before each micro-step's backward: only the last one communicates.
  void begin_backward(bool communicate);
  // After the last micro-step's backward: starts the units the hooks did not.
  void end_backward();

  // Waits for bucket `unit` and writes the mean gradients into .grad.
  void wait_bucket(size_t unit);
  // Waits for shard `unit`; returns the mean gradient of this rank's slot,
  // shaped like its parameter (undefined for a padding slot).
  torch::Tensor wait_shard(size_t unit);

  const std::vector<GradientUnit>& units() const { return units_; }

  // What happened in the last communicating backward, for tests and logs:
  // "ready <param>", "launch <unit>", "end_backward".
  std::vector<std::string> events() const;

 private:
  struct Pending {
    torch::Tensor input, output;  // flat buffers of the unit
    std::unique_ptr<Work> work;
    bool launched = false;
  };
  void mark_ready(int param);
  void launch_ready_units();  // caller holds mutex_
  void launch(size_t unit);   // caller holds mutex_
  void adopt_observed_order();

  Communicator& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<GradientUnit> units_;
  std::vector<size_t> order_;         // launch order of units
  std::vector<int> unit_of_param_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keep the hooks alive

  mutable std::mutex mutex_;
  bool communicating_ = false;
  bool order_settled_ = false;
  size_t next_launch_ = 0;            // position in order_
  std::vector<int> missing_;          // per unit: parameters not yet ready
  std::vector<bool> ready_;
  std::vector<Pending> pending_;
  std::vector<int> observed_order_;   // parameters in the order they became ready
  std::vector<std::string> events_;
};

}  // namespace muonrun
