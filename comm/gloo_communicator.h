// Collectives on CPU tensors through LibTorch's c10d Gloo backend, for CPU
// runs launched by torchrun or Slurm without MPI: the ranks already meet in a
// c10d TCPStore, which Gloo uses to connect.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

#include "comm/communicator.h"

namespace muonrun {

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                   std::chrono::milliseconds timeout);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "gloo"; }
  torch::Device device() const override { return torch::kCPU; }

  std::unique_ptr<Work> all_reduce_mean(torch::Tensor tensor) override;
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) override;
  std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) override;
  std::unique_ptr<Work> broadcast(torch::Tensor tensor, int root) override;
  void barrier() override;

 private:
  int rank_, size_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace muonrun
