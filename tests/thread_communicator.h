// Ranks as threads of one test process: a Communicator whose collectives
// meet in shared memory, so that a test can run the optimizer's distributed
// paths (owner-distributed and replicated Muon, bucketed all-reduce) on
// several ranks without MPI, Gloo or a network. Every collective completes
// before it returns (its Work is already done), which the asynchronous
// interface allows: all ranks issue the same collectives in the same order.
// Means are sums in rank order divided by the world size, the same on every
// rank. A rank that stops calling makes the others throw after `timeout`
// instead of hanging the test.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"

namespace muonrun::tests {

class ThreadWorld {
 public:
  explicit ThreadWorld(int size, std::chrono::seconds timeout = std::chrono::seconds(120))
      : size_(size), timeout_(timeout), slots_(size) {}
  int size() const { return size_; }

  // Publishes this rank's tensor, waits for all, and returns every rank's (in rank order).
  std::vector<torch::Tensor> exchange(int rank, const torch::Tensor& mine) {
    slots_[rank] = mine;
    barrier();
    std::vector<torch::Tensor> all = slots_;
    barrier();  // nobody publishes the next collective's tensor before all have read this one's
    return all;
  }

  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    if (!cv_.wait_for(lock, timeout_, [&] { return generation_ != generation; }))
      throw CommunicationError("ThreadWorld: a rank did not reach the collective within the timeout");
  }

 private:
  const int size_;
  const std::chrono::seconds timeout_;
  std::vector<torch::Tensor> slots_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(ThreadWorld& world, int rank) : world_(world), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return world_.size(); }
  std::string name() const override { return "threads"; }
  torch::Device device() const override { return torch::kCPU; }

  std::unique_ptr<Work> all_reduce_mean(torch::Tensor tensor) override {
    tensor.copy_(sum(world_.exchange(rank_, tensor.clone()), -1) / size());
    return done();
  }
  std::unique_ptr<Work> all_reduce_sum(torch::Tensor tensor) override {
    tensor.copy_(sum(world_.exchange(rank_, tensor.clone()), -1));
    return done();
  }
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) override {
    output.view({-1}).copy_(sum(world_.exchange(rank_, input.clone()), rank_) / size());
    return done();
  }
  std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) override {
    const auto all = world_.exchange(rank_, input.clone());
    auto rows = output.view({size(), -1});
    for (int r = 0; r < size(); ++r) rows[r].copy_(all[r].view({-1}));
    return done();
  }
  std::unique_ptr<Work> broadcast(torch::Tensor tensor, int root) override {
    tensor.copy_(world_.exchange(rank_, tensor.clone())[root]);
    return done();
  }
  void barrier() override { world_.barrier(); }

 private:
  // The sum over ranks in rank order: of the whole tensors (chunk -1), or of
  // chunk `chunk` of size() equal chunks.
  torch::Tensor sum(const std::vector<torch::Tensor>& all, int chunk) const {
    auto part = [&](const torch::Tensor& t) { return chunk < 0 ? t : t.view({size(), -1})[chunk]; };
    auto total = part(all[0]).clone();
    for (int r = 1; r < size(); ++r) total.add_(part(all[r]));
    return total;
  }
  static std::unique_ptr<Work> done() {
    struct Done : Work {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }

  ThreadWorld& world_;
  const int rank_;
};

// Runs body(rank, communicator) on `world` threads and rethrows the first
// exception any of them threw.
inline void run_ranks(int world, const std::function<void(int, Communicator&)>& body) {
  ThreadWorld shared(world);
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        ThreadCommunicator comm(shared, r);
        body(r, comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace muonrun::tests
