#include "comm/c10d_communicator.h"

#include "comm/collective_wait.h"

namespace muonrun {
namespace {

class C10dWork : public Work {
 public:
  C10dWork(c10::intrusive_ptr<c10d::Work> work, std::string what, torch::Tensor divide, int size)
      : work_(std::move(work)), what_(std::move(what)), divide_(std::move(divide)), size_(size) {}
  void wait() override {
    if (!work_) return;
    try {
      const CollectiveWait waiting;
      work_->wait();  // throws on a timeout, a lost peer or an aborted communicator
    } catch (const std::exception& e) {
      work_.reset();
      throw CommunicationError(what_ + " failed: " + e.what());
    }
    work_.reset();
    if (divide_.defined()) divide_.div_(size_);
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::string what_;
  torch::Tensor divide_;
  int size_;
};

void check_contiguous(const torch::Tensor& t, const torch::Device& device, const char* what) {
  TORCH_CHECK(t.is_contiguous() && t.device() == device, what, ": the communicator needs contiguous tensors on ",
              device.str(), ", got ", t.device().str());
}

}  // namespace

C10dCommunicator::C10dCommunicator(c10::intrusive_ptr<c10d::Backend> backend, std::string name,
                                   torch::Device device, bool averages)
    : backend_(std::move(backend)), name_(std::move(name)), device_(device), averages_(averages) {}

c10d::ReduceOp C10dCommunicator::mean_op() const {
  return averages_ ? c10d::ReduceOp::AVG : c10d::ReduceOp::SUM;
}

template <class Start>
std::unique_ptr<Work> C10dCommunicator::run(const char* what, Start&& start, torch::Tensor result) {
  const std::string label = name_ + " " + what;
  try {
    return std::make_unique<C10dWork>(start(), label, averages_ ? torch::Tensor() : result, size());
  } catch (const std::exception& e) {
    // Gloo reports a lost peer from the call as well as from the wait.
    throw CommunicationError(label + " failed: " + e.what());
  }
}

std::unique_ptr<Work> C10dCommunicator::all_reduce_mean(torch::Tensor tensor) {
  return all_reduce(std::move(tensor), /*mean=*/true);
}

std::unique_ptr<Work> C10dCommunicator::all_reduce_sum(torch::Tensor tensor) {
  return all_reduce(std::move(tensor), /*mean=*/false);
}

std::unique_ptr<Work> C10dCommunicator::all_reduce(torch::Tensor tensor, bool mean) {
  check_contiguous(tensor, device_, mean ? "all_reduce_mean" : "all_reduce_sum");
  c10d::AllreduceOptions options;
  options.reduceOp = mean ? mean_op() : c10d::ReduceOp(c10d::ReduceOp::SUM);
  return run("all-reduce", [&] {
    std::vector<torch::Tensor> tensors{tensor};
    return backend_->allreduce(tensors, options);
  }, mean ? tensor : torch::Tensor());
}

std::unique_ptr<Work> C10dCommunicator::reduce_scatter_mean(torch::Tensor input, torch::Tensor output) {
  TORCH_CHECK(input.numel() == output.numel() * size(), "reduce_scatter: input must hold size() chunks of output");
  check_contiguous(input, device_, "reduce_scatter_mean");
  check_contiguous(output, device_, "reduce_scatter_mean");
  c10d::ReduceScatterOptions options;
  options.reduceOp = mean_op();
  return run("reduce-scatter", [&] {
    auto flat_out = output.view({-1});
    auto flat_in = input.view({-1});
    return backend_->_reduce_scatter_base(flat_out, flat_in, options);
  }, output);
}

std::unique_ptr<Work> C10dCommunicator::all_gather(torch::Tensor input, torch::Tensor output) {
  TORCH_CHECK(output.numel() == input.numel() * size(), "all_gather: output must hold size() copies of input");
  check_contiguous(input, device_, "all_gather");
  check_contiguous(output, device_, "all_gather");
  return run("all-gather", [&] {
    auto flat_out = output.view({-1});
    auto flat_in = input.view({-1});
    return backend_->_allgather_base(flat_out, flat_in);
  });
}

std::unique_ptr<Work> C10dCommunicator::broadcast(torch::Tensor tensor, int root) {
  check_contiguous(tensor, device_, "broadcast");
  c10d::BroadcastOptions options;
  options.rootRank = root;
  return run("broadcast", [&] {
    std::vector<torch::Tensor> tensors{tensor};
    return backend_->broadcast(tensors, options);
  });
}

void C10dCommunicator::barrier() {
  // An all-reduce of one element, waited for on the host: c10d's own barrier
  // would, for NCCL, guess a device from the rank.
  auto token = torch::zeros({1}, torch::dtype(torch::kFloat).device(device_));
  all_reduce_mean(token)->wait();
  token.item<float>();
}

}  // namespace muonrun
