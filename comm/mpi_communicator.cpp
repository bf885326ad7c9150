#include "comm/mpi_communicator.h"

#include <climits>
#include <functional>
#include <stdexcept>
#include <thread>

#include "comm/collective_wait.h"

namespace muonrun {
namespace {

MPI_Datatype mpi_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kLong: return MPI_INT64_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kByte: return MPI_UINT8_T;
    default:
      throw std::runtime_error(std::string("MPI communicator: unsupported dtype ") +
                               c10::toString(t.scalar_type()));
  }
}

int mpi_count(const torch::Tensor& t) {
  TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), "MPI communicator needs contiguous CPU tensors");
  TORCH_CHECK(t.numel() <= INT_MAX, "MPI communicator: tensor of ", t.numel(), " elements is too large for one call");
  return static_cast<int>(t.numel());
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, message, &length);
    throw CommunicationError(std::string("MPI ") + what + " failed: " + std::string(message, length));
  }
}

// A pending MPI request; `finish` runs on the host once it completes (e.g.
// dividing a sum by the world size to get the mean).
class MpiWork : public Work {
 public:
  MpiWork(MPI_Request request, const char* what, int rank, std::chrono::milliseconds timeout,
          std::function<void()> finish, std::vector<torch::Tensor> keep_alive)
      : request_(request), what_(what), rank_(rank), timeout_(timeout), finish_(std::move(finish)),
        keep_alive_(std::move(keep_alive)) {}

  ~MpiWork() override {
    // Work is only dropped unfinished when the run is failing (a normal step
    // waits on everything it starts). Waiting here could block forever on a
    // dead peer, and MPI forbids freeing a collective's request: leave the
    // request and its buffers to the ending process.
    if (request_ == MPI_REQUEST_NULL) return;
    int done = 0;
    MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
    if (!done) abandon();
  }

  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    // Poll rather than MPI_Wait, so that a dead or stuck peer becomes an
    // error after the timeout instead of a hang.
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    const CollectiveWait waiting;
    int done = 0;
    while (true) {
      check(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), what_);
      if (done) break;
      if (std::chrono::steady_clock::now() > deadline) {
        abandon();
        throw CommunicationError("MPI " + std::string(what_) + " did not complete within " +
                                 std::to_string(timeout_.count() / 1000) + " s (comm.timeout_s)");
      }
      std::this_thread::yield();
    }
    if (finish_) finish_();
  }

 private:
  // MPI still owns the request and may write into its buffers later: keep
  // them alive (deliberately leaked) rather than free them under MPI.
  void abandon() {
    request_ = MPI_REQUEST_NULL;
    new std::vector<torch::Tensor>(std::move(keep_alive_));
  }

  MPI_Request request_;
  const char* what_;
  int rank_;
  std::chrono::milliseconds timeout_;
  std::function<void()> finish_;
  std::vector<torch::Tensor> keep_alive_;
};

}  // namespace

MpiCommunicator::MpiCommunicator(std::chrono::milliseconds timeout) : timeout_(timeout) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // Errors come back as return codes (turned into exceptions) instead of
  // aborting the job without a message.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_mean(torch::Tensor tensor) {
  return all_reduce(std::move(tensor), /*mean=*/true);
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_sum(torch::Tensor tensor) {
  return all_reduce(std::move(tensor), /*mean=*/false);
}

std::unique_ptr<Work> MpiCommunicator::all_reduce(torch::Tensor tensor, bool mean) {
  MPI_Request request;
  check(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), mpi_count(tensor), mpi_type(tensor), MPI_SUM,
                       MPI_COMM_WORLD, &request),
        "all-reduce");
  const int world = size_;
  std::function<void()> finish;
  if (mean) finish = [tensor, world]() mutable { tensor.div_(world); };
  return std::make_unique<MpiWork>(request, "all-reduce", rank_, timeout_, std::move(finish),
                                   std::vector<torch::Tensor>{tensor});
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter_mean(torch::Tensor input, torch::Tensor output) {
  TORCH_CHECK(input.numel() == output.numel() * size_, "reduce_scatter: input must hold size() chunks of output");
  TORCH_CHECK(input.scalar_type() == output.scalar_type(), "reduce_scatter: dtypes differ");
  MPI_Request request;
  check(MPI_Ireduce_scatter_block(input.data_ptr(), output.data_ptr(), mpi_count(output), mpi_type(output),
                                  MPI_SUM, MPI_COMM_WORLD, &request),
        "reduce-scatter");
  const int world = size_;
  return std::make_unique<MpiWork>(request, "reduce-scatter", rank_, timeout_,
                                   [output, world]() mutable { output.div_(world); },
                                   std::vector<torch::Tensor>{input, output});
}

std::unique_ptr<Work> MpiCommunicator::all_gather(torch::Tensor input, torch::Tensor output) {
  TORCH_CHECK(output.numel() == input.numel() * size_, "all_gather: output must hold size() copies of input");
  TORCH_CHECK(input.scalar_type() == output.scalar_type(), "all_gather: dtypes differ");
  MPI_Request request;
  check(MPI_Iallgather(input.data_ptr(), mpi_count(input), mpi_type(input), output.data_ptr(),
                       mpi_count(input), mpi_type(output), MPI_COMM_WORLD, &request),
        "all-gather");
  return std::make_unique<MpiWork>(request, "all-gather", rank_, timeout_, nullptr,
                                   std::vector<torch::Tensor>{input, output});
}

std::unique_ptr<Work> MpiCommunicator::broadcast(torch::Tensor tensor, int root) {
  MPI_Request request;
  check(MPI_Ibcast(tensor.data_ptr(), mpi_count(tensor), mpi_type(tensor), root, MPI_COMM_WORLD, &request),
        "broadcast");
  return std::make_unique<MpiWork>(request, "broadcast", rank_, timeout_, nullptr,
                                   std::vector<torch::Tensor>{tensor});
}

void MpiCommunicator::barrier() {
  MPI_Request request;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &request), "barrier");
  MpiWork(request, "barrier", rank_, timeout_, nullptr, {}).wait();
}

}  // namespace muonrun
