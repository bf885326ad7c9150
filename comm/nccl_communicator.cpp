#include "comm/nccl_communicator.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <mpi.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace muonrun {
namespace {

// Exit code of a rank that gave up on its peers (see README, "Runs that fail").
constexpr int kExitCommunicationFailure = 3;

void check(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess && rc != ncclInProgress)
    throw std::runtime_error(std::string("NCCL ") + what + " failed: " + ncclGetErrorString(rc));
}

ncclDataType_t nccl_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return ncclFloat32;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kHalf: return ncclFloat16;
    case torch::kDouble: return ncclFloat64;
    case torch::kLong: return ncclInt64;
    case torch::kInt: return ncclInt32;
    case torch::kByte: return ncclUint8;
    default:
      throw std::runtime_error(std::string("NCCL communicator: unsupported dtype ") + c10::toString(t.scalar_type()));
  }
}

class NcclWork : public Work {
 public:
  explicit NcclWork(std::shared_ptr<at::cuda::CUDAEvent> done) : done_(std::move(done)) {}
  void wait() override { done_->block(c10::cuda::getCurrentCUDAStream()); }

 private:
  std::shared_ptr<at::cuda::CUDAEvent> done_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const ncclUniqueId& id, int rank, int size, const torch::Device& device,
                   std::chrono::milliseconds timeout)
      : rank_(rank), size_(size), device_(device), timeout_(timeout),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index())) {
    c10::cuda::CUDAGuard guard(device_);
    check(ncclCommInitRank(&comm_, size, id, rank), "init");
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    if (!aborted_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  torch::Device device() const override { return device_; }

  std::unique_ptr<Work> all_reduce_mean(torch::Tensor t) override {
    return enqueue("all-reduce", {t}, [&](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), ncclAvg, comm_, s);
    });
  }
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) override {
    TORCH_CHECK(input.numel() == output.numel() * size_, "reduce_scatter: input must hold size() chunks of output");
    return enqueue("reduce-scatter", {input, output}, [&](cudaStream_t s) {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), nccl_type(output), ncclAvg,
                               comm_, s);
    });
  }
  std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) override {
    TORCH_CHECK(output.numel() == input.numel() * size_, "all_gather: output must hold size() copies of input");
    return enqueue("all-gather", {input, output}, [&](cudaStream_t s) {
      return ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(), nccl_type(input), comm_, s);
    });
  }
  std::unique_ptr<Work> broadcast(torch::Tensor t, int root) override {
    return enqueue("broadcast", {t}, [&](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), root, comm_, s);
    });
  }
  void barrier() override {
    auto token = torch::zeros({1}, torch::dtype(torch::kFloat).device(device_));
    all_reduce_mean(token)->wait();
    token.item<float>();  // the host waits here: that is what a barrier is for
  }

 private:
  struct InFlight {
    std::shared_ptr<at::cuda::CUDAEvent> done;
    std::chrono::steady_clock::time_point started;
    const char* what;
  };

  template <class Launch>
  std::unique_ptr<Work> enqueue(const char* what, std::initializer_list<torch::Tensor> tensors, Launch&& launch) {
    for (const auto& t : tensors)
      TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "NCCL communicator needs contiguous CUDA tensors");
    c10::cuda::CUDAGuard guard(device_);
    // The collective starts after everything queued so far on the caller's stream.
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream());
    ready.block(stream_);
    check(launch(stream_.stream()), what);
    // The caching allocator must not hand these buffers to other work until
    // the communication stream is done with them.
    for (const auto& t : tensors) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream_);
    auto done = std::make_shared<at::cuda::CUDAEvent>();
    done->record(stream_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_flight_.push_back({done, std::chrono::steady_clock::now(), what});
    }
    return std::make_unique<NcclWork>(done);
  }

  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(200));
      ncclResult_t async_error = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async_error);
      if (async_error != ncclSuccess && async_error != ncclInProgress)
        fail(std::string("NCCL reported an asynchronous error: ") + ncclGetErrorString(async_error));
      while (!in_flight_.empty() && in_flight_.front().done->query()) in_flight_.pop_front();
      if (!in_flight_.empty() && std::chrono::steady_clock::now() - in_flight_.front().started > timeout_)
        fail(std::string("NCCL ") + in_flight_.front().what + " did not complete within " +
             std::to_string(timeout_.count() / 1000) +
             " s (comm.timeout_s): another rank died or stopped responding");
    }
  }

  [[noreturn]] void fail(const std::string& why) {
    spdlog::error("rank {}: {}; aborting the NCCL communicator", rank_, why);
    aborted_ = true;
    ncclCommAbort(comm_);
    spdlog::default_logger()->flush();
    std::_Exit(kExitCommunicationFailure);
  }

  int rank_, size_;
  torch::Device device_;
  std::chrono::milliseconds timeout_;
  c10::cuda::CUDAStream stream_;
  ncclComm_t comm_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<InFlight> in_flight_;
  bool stopping_ = false;
  std::atomic<bool> aborted_{false};
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator_mpi(int rank, int size, const torch::Device& device,
                                                         std::chrono::milliseconds timeout) {
  ncclUniqueId id;
  if (rank == 0) check(ncclGetUniqueId(&id), "get unique id");
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  return std::make_unique<NcclCommunicator>(id, rank, size, device, timeout);
}

std::unique_ptr<Communicator> make_nccl_communicator_store(const c10::intrusive_ptr<c10d::Store>& store,
                                                           int rank, int size, const torch::Device& device,
                                                           std::chrono::milliseconds timeout) {
  ncclUniqueId id;
  if (rank == 0) {
    check(ncclGetUniqueId(&id), "get unique id");
    const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
    store->set("nccl_unique_id", std::vector<uint8_t>(bytes, bytes + sizeof(id)));
  } else {
    auto bytes = store->get("nccl_unique_id");  // waits up to the store's timeout
    if (bytes.size() != sizeof(id)) throw std::runtime_error("NCCL unique id from the store has the wrong size");
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  return std::make_unique<NcclCommunicator>(id, rank, size, device, timeout);
}

}  // namespace muonrun
