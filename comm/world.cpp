#include "comm/world.h"

#include <mpi.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <unistd.h>

#include <array>
#include <fstream>
#include <stdexcept>

#include "comm/mpi_communicator.h"
#ifdef MUONRUN_WITH_GLOO
#include "comm/gloo_communicator.h"
#endif
#ifdef MUONRUN_WITH_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace muonrun {
namespace {

c10::intrusive_ptr<c10d::Store> connect_store(const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(launch.master_port);
  options.isServer = launch.rank == 0 && !launch.store_hosted_by_agent;
  options.numWorkers = launch.store_hosted_by_agent ? c10::nullopt : c10::optional<size_t>(launch.size);
  options.waitWorkers = !launch.store_hosted_by_agent;
  options.timeout = timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
  return c10::make_intrusive<c10d::PrefixStore>(launch.store_prefix, tcp);
}

#ifdef MUONRUN_WITH_CUDA
// Under mpirun, c10d's NCCL backend still needs a store: rank 0 opens a
// TCPStore on a free port of MASTER_ADDR (default: its host name) and MPI
// tells the others where it is.
c10::intrusive_ptr<c10d::Store> store_over_mpi(const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  std::array<char, 256> host{};
  c10d::TCPStoreOptions options;
  options.timeout = timeout;
  c10::intrusive_ptr<c10d::TCPStore> tcp;
  int port = 0;
  if (launch.rank == 0) {
    std::string addr = launch.master_addr;
    if (addr.empty()) {
      gethostname(host.data(), host.size() - 1);
      addr = host.data();
    }
    std::snprintf(host.data(), host.size(), "%s", addr.c_str());
    options.port = 0;  // the system picks a free port
    options.isServer = true;
    options.waitWorkers = false;
    tcp = c10::make_intrusive<c10d::TCPStore>(addr, options);
    port = tcp->getPort();
  }
  MPI_Bcast(host.data(), static_cast<int>(host.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (launch.rank != 0) {
    options.port = static_cast<uint16_t>(port);
    tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host.data()), options);
  }
  return tcp;
}
#endif  // MUONRUN_WITH_CUDA

uint64_t executable_hash() {
  std::ifstream in("/proc/self/exe", std::ios::binary);
  std::vector<char> buffer(1 << 20);
  uint64_t hash = fnv1a(nullptr, 0);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hash = fnv1a(buffer.data(), static_cast<size_t>(in.gcount()), hash);
  }
  return hash;
}

}  // namespace

uint64_t fnv1a(const void* data, size_t size, uint64_t hash) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

World::World(const LaunchInfo& launch, const torch::Device& device, std::chrono::milliseconds timeout)
    : launch_(launch) {
  if (launch.launcher == Launcher::Single) return;

  c10::intrusive_ptr<c10d::Store> store;
  if (launch.launcher == Launcher::Mpi) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
      throw std::runtime_error("MPI_Init_thread failed");
    mpi_initialised_ = true;
    if (provided < MPI_THREAD_SERIALIZED)
      throw std::runtime_error("this MPI does not support MPI_THREAD_SERIALIZED");
  } else {
    store = connect_store(launch, timeout);
  }

  if (device.is_cuda()) {
#ifdef MUONRUN_WITH_CUDA
    if (!store) store = store_over_mpi(launch, timeout);
    comm_ = make_nccl_communicator(store, launch.rank, launch.size, device, timeout);
#else
    throw std::runtime_error("CUDA device requested, but muonrun was built without CUDA (MUONRUN_CUDA=OFF)");
#endif
  } else if (launch.launcher == Launcher::Mpi) {
    comm_ = std::make_unique<MpiCommunicator>(timeout);
  } else {
#ifdef MUONRUN_WITH_GLOO
    comm_ = make_gloo_communicator(store, launch.rank, launch.size, timeout);
#else
    throw std::runtime_error(std::string("CPU training under ") + launcher_name(launch.launcher) +
                             " needs Gloo, and muonrun was built without its headers: launch with mpirun");
#endif
  }
}

World::~World() {
  comm_.reset();
  if (mpi_initialised_) MPI_Finalize();
}

void World::check_same_run(uint64_t config_hash) const {
  if (!comm_) return;
  auto local = torch::tensor({static_cast<int64_t>(config_hash), static_cast<int64_t>(executable_hash())},
                             torch::kLong)
                   .to(comm_->device());
  auto all = torch::empty({size(), 2}, local.options());
  comm_->all_gather(local, all)->wait();
  all = all.to(torch::kCPU);
  std::string differences;
  for (int r = 1; r < size(); ++r) {
    if (all[r][0].item<int64_t>() != all[0][0].item<int64_t>())
      differences += " rank " + std::to_string(r) + " runs a different config than rank 0;";
    if (all[r][1].item<int64_t>() != all[0][1].item<int64_t>())
      differences += " rank " + std::to_string(r) + " runs a different muonrun binary than rank 0;";
  }
  if (!differences.empty())
    throw std::runtime_error("the ranks do not run the same job:" + differences +
                             " start every rank with the same binary, config files and --set options");
}

void World::abort(int exit_code) const {
  if (mpi_initialised_) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

}  // namespace muonrun
