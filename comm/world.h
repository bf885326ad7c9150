// Joining the ranks of a data-parallel run: MPI or a c10d TCPStore for the
// rendezvous, then the communicator that suits the device (NCCL for CUDA,
// MPI or Gloo for the CPU), and a check that every rank runs the same thing.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/launch.h"

namespace muonrun {

class World {
 public:
  // Connects to the other ranks of `launch`; `device` is this rank's device.
  // A single process gets no communicator.
  World(const LaunchInfo& launch, const torch::Device& device, std::chrono::milliseconds timeout);
  // Shuts the communicator down cleanly when leaving normally; while an
  // exception unwinds, drops (aborts) it instead.
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return launch_.rank; }
  int size() const { return launch_.size; }
  int local_rank() const { return launch_.local_rank; }
  int local_size() const { return launch_.local_size; }
  const LaunchInfo& launch() const { return launch_; }
  // Null for a single process (no launcher).
  Communicator* comm() const { return comm_.get(); }

  // All ranks compare `config_hash` and the hash of this executable, and all
  // throw the same message naming the ranks that differ.
  void check_same_run(uint64_t config_hash) const;

  // Every rank's `words` (the same count on every rank), in rank order.
  std::vector<int64_t> all_gather_words(const std::vector<int64_t>& words) const;

  // Ends the job on every rank (MPI_Abort under mpirun); used after an error
  // so that the other ranks do not wait for this one until their timeout.
  // `links_may_be_down` (after a communication failure): Open MPI's daemons
  // cannot pass an abort over a cut link and wait for TCP to give up
  // (minutes), so this rank first ends its own launcher process (mpirun, or
  // the node's orted) with two SIGTERMs, Open MPI's "terminate now".
  void abort(int exit_code, bool links_may_be_down = false) const;

 private:
  LaunchInfo launch_;
  bool mpi_initialised_ = false;
  std::unique_ptr<Communicator> comm_;
};

// FNV-1a, 64 bit: a fast hash for comparing configs and binaries across ranks.
uint64_t fnv1a(const void* data, size_t size, uint64_t hash = 14695981039346656037ull);

}  // namespace muonrun
