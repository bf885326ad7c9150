#include "comm/gloo_communicator.h"

#include <cstdlib>
#include <functional>

namespace muonrun {
namespace {

class GlooWork : public Work {
 public:
  GlooWork(c10::intrusive_ptr<c10d::Work> work, std::function<void()> finish)
      : work_(std::move(work)), finish_(std::move(finish)) {}
  void wait() override {
    if (!work_) return;
    try {
      work_->wait();  // throws on timeout or a lost peer
    } catch (const std::exception& e) {
      work_.reset();
      throw CommunicationError(std::string("Gloo collective failed: ") + e.what());
    }
    work_.reset();
    if (finish_) finish_();
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::function<void()> finish_;
};

// Gloo reports a lost peer from the call as well as from the wait.
template <class F>
c10::intrusive_ptr<c10d::Work> start(F&& call) {
  try {
    return call();
  } catch (const std::exception& e) {
    throw CommunicationError(std::string("Gloo collective failed: ") + e.what());
  }
}

std::vector<torch::Tensor> chunks(const torch::Tensor& t, int n) {
  return t.view({-1}).chunk(n);
}

}  // namespace

GlooCommunicator::GlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                   std::chrono::milliseconds timeout)
    : rank_(rank), size_(size) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // As torch.distributed does: GLOO_SOCKET_IFNAME picks the network interface.
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  options->devices.push_back(ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                    : c10d::ProcessGroupGloo::createDefaultDevice());
  group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

std::unique_ptr<Work> GlooCommunicator::all_reduce_mean(torch::Tensor tensor) {
  std::vector<torch::Tensor> tensors{tensor};
  const int world = size_;
  return std::make_unique<GlooWork>(start([&] { return group_->allreduce(tensors); }),
                                    [tensor, world]() mutable { tensor.div_(world); });
}

std::unique_ptr<Work> GlooCommunicator::reduce_scatter_mean(torch::Tensor input, torch::Tensor output) {
  TORCH_CHECK(input.numel() == output.numel() * size_, "reduce_scatter: input must hold size() chunks of output");
  // Gloo has no reduce-scatter: all-reduce a copy and keep this rank's chunk
  // (twice the traffic; Gloo serves CPU runs, where correctness is the point).
  auto summed = input.clone();
  std::vector<torch::Tensor> tensors{summed};
  const int world = size_, rank = rank_;
  return std::make_unique<GlooWork>(start([&] { return group_->allreduce(tensors); }),
                                    [summed, output, world, rank]() mutable {
    output.view({-1}).copy_(summed.view({-1}).chunk(world)[rank]).div_(world);
  });
}

std::unique_ptr<Work> GlooCommunicator::all_gather(torch::Tensor input, torch::Tensor output) {
  TORCH_CHECK(output.numel() == input.numel() * size_, "all_gather: output must hold size() copies of input");
  std::vector<std::vector<torch::Tensor>> outputs{chunks(output, size_)};
  std::vector<torch::Tensor> inputs{input.view({-1})};
  return std::make_unique<GlooWork>(start([&] { return group_->allgather(outputs, inputs); }), nullptr);
}

std::unique_ptr<Work> GlooCommunicator::broadcast(torch::Tensor tensor, int root) {
  std::vector<torch::Tensor> tensors{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  return std::make_unique<GlooWork>(start([&] { return group_->broadcast(tensors, options); }), nullptr);
}

void GlooCommunicator::barrier() { GlooWork(start([&] { return group_->barrier(); }), nullptr).wait(); }

}  // namespace muonrun
