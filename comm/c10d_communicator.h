// Collectives through one of LibTorch's c10d backends: ProcessGroupNCCL for
// CUDA tensors, ProcessGroupGloo for CPU tensors under torchrun or Slurm.
// Their watchdogs, timeouts and TORCH_NCCL_* / NCCL_* / GLOO_* variables are
// the ones torchrun users know; this class only adapts them to muonrun's
// Communicator (means instead of sums, flat reduce-scatter and all-gather).
//
// Waiting follows c10d: for NCCL, Work::wait() makes the caller's current
// CUDA stream wait for the collective (no host block), so backward keeps
// queueing kernels while gradients travel; for Gloo it blocks the host.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <memory>
#include <string>

#include "comm/communicator.h"

namespace muonrun {

class C10dCommunicator : public Communicator {
 public:
  // `averages`: the backend has ReduceOp::AVG (NCCL); otherwise means are a
  // sum divided by size() once the collective completes (Gloo).
  C10dCommunicator(c10::intrusive_ptr<c10d::Backend> backend, std::string name, torch::Device device,
                   bool averages);

  int rank() const override { return backend_->getRank(); }
  int size() const override { return backend_->getSize(); }
  std::string name() const override { return name_; }
  torch::Device device() const override { return device_; }

  std::unique_ptr<Work> all_reduce_mean(torch::Tensor tensor) override;
  std::unique_ptr<Work> all_reduce_sum(torch::Tensor tensor) override;
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) override;
  std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) override;
  std::unique_ptr<Work> broadcast(torch::Tensor tensor, int root) override;
  void barrier() override;
  void shutdown() override { backend_->shutdown(); }

 private:
  c10d::ReduceOp mean_op() const;
  // A sum, or (`mean`) a mean: AVG where the backend has it, else a sum divided by size().
  std::unique_ptr<Work> all_reduce(torch::Tensor tensor, bool mean);
  // Starts a collective, turning c10d's exceptions into CommunicationError;
  // `result` (when defined) is divided by size() after a summing collective.
  template <class Start>
  std::unique_ptr<Work> run(const char* what, Start&& start, torch::Tensor result = {});

  c10::intrusive_ptr<c10d::Backend> backend_;
  std::string name_;
  torch::Device device_;
  bool averages_;
};

}  // namespace muonrun
