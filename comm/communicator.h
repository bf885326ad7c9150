// The collectives data-parallel training needs, behind one interface:
//   NcclCommunicator  CUDA tensors; collectives on a dedicated stream, ordered
//                     against compute with CUDA events (no host waits)
//   MpiCommunicator   CPU tensors under mpirun / srun with MPI (non-blocking MPI)
//   GlooCommunicator  CPU tensors under torchrun or Slurm without MPI
//                     (LibTorch's c10d Gloo over the TCPStore rendezvous)
//
// Every operation is asynchronous and returns a Work handle. All ranks must
// issue the same collectives in the same order; the gradient reducer
// guarantees that for the training step.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace muonrun {

// A collective failed or timed out: another rank died, hangs, or the network
// broke. `muonrun train` exits with its own code for it.
struct CommunicationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Work {
 public:
  virtual ~Work() = default;
  // Returns once the result may be used by subsequent work: on the host for
  // CPU communicators; for NCCL, the current CUDA stream is made to wait (the
  // host does not block).
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi", "gloo" or "nccl", for logs.
  virtual std::string name() const = 0;

  // In place: every rank ends with the element-wise mean over ranks.
  virtual std::unique_ptr<Work> all_reduce_mean(torch::Tensor tensor) = 0;
  // In place: every rank ends with the element-wise sum over ranks. Counts
  // and flags that decide something are summed, never averaged: NCCL's AVG
  // multiplies each rank's value by float(1/n) before summing, so the mean of
  // n ones is not 1 at n = 12, 24 or 48 (0.99999958 at 48).
  virtual std::unique_ptr<Work> all_reduce_sum(torch::Tensor tensor) = 0;
  // `input` holds size() equal chunks; rank r receives the mean over ranks of
  // chunk r in `output` (numel = input.numel() / size()).
  virtual std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) = 0;
  // `output` (numel = size() x input.numel()) receives every rank's `input`, in rank order.
  virtual std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) = 0;
  // In place: every rank ends with `root`'s tensor.
  virtual std::unique_ptr<Work> broadcast(torch::Tensor tensor, int root) = 0;
  virtual void barrier() = 0;
  // The normal end of the job: lets the backend finish and release its
  // resources (for NCCL, c10d's destroy_process_group), where destruction
  // alone would abort it. Called on every rank after its last collective.
  virtual void shutdown() {}

  // The device tensors passed to this communicator must live on.
  virtual torch::Device device() const = 0;
};

}  // namespace muonrun
