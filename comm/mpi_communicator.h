// Collectives on CPU tensors with non-blocking MPI, for runs under mpirun (or
// srun with an MPI built for Slurm). Lets every multi-rank test run on
// machines without GPUs.
#pragma once

#include <mpi.h>

#include <chrono>

#include "comm/communicator.h"

namespace muonrun {

class MpiCommunicator : public Communicator {
 public:
  // Uses MPI_COMM_WORLD; MPI must be initialised. A wait longer than
  // `timeout` throws, naming the operation, instead of hanging forever.
  explicit MpiCommunicator(std::chrono::milliseconds timeout);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  torch::Device device() const override { return torch::kCPU; }

  std::unique_ptr<Work> all_reduce_mean(torch::Tensor tensor) override;
  std::unique_ptr<Work> all_reduce_sum(torch::Tensor tensor) override;
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) override;
  std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) override;
  std::unique_ptr<Work> broadcast(torch::Tensor tensor, int root) override;
  void barrier() override;

 private:
  // MPI_SUM, then (`mean`) a division by the world size once it completes.
  std::unique_ptr<Work> all_reduce(torch::Tensor tensor, bool mean);

  int rank_ = 0, size_ = 1;
  std::chrono::milliseconds timeout_;
};

}  // namespace muonrun
