#include "comm/world.h"

#include <mpi.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "comm/mpi_communicator.h"
#ifdef MUONRUN_WITH_GLOO
#include "comm/gloo_communicator.h"
#endif
#ifdef MUONRUN_WITH_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace muonrun {
namespace {

std::string store_address(const LaunchInfo& launch) {
  return launch.master_addr + ":" + std::to_string(launch.master_port);
}

// c10d's errors carry a C++ stack trace; a user needs the first line.
std::string without_backtrace(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

c10::intrusive_ptr<c10d::Store> connect_store(const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(launch.master_port);
  options.isServer = launch.rank == 0 && !launch.store_hosted_by_agent;
  // Rank 0 does not wait for the others here: wait_for_every_rank() does,
  // and names the ones that never came.
  options.waitWorkers = false;
  options.timeout = timeout;
  try {
    auto tcp = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
    return c10::make_intrusive<c10d::PrefixStore>(launch.store_prefix, tcp);
  } catch (const std::exception& e) {
    throw CommunicationError(
        "rank " + std::to_string(launch.rank) + (options.isServer ? " cannot open" : " cannot reach") +
        " the rendezvous store on " + store_address(launch) + " (MASTER_ADDR:MASTER_PORT) within " +
        std::to_string(timeout.count() / 1000) + " s (comm.timeout_s): " + without_backtrace(e) +
        (options.isServer ? "" : "; is rank 0 running, and are MASTER_ADDR and MASTER_PORT the same on every rank?"));
  }
}

// Every rank announces itself in the store and waits until all have, so
// that a rank that never starts is named after comm.timeout_s instead of
// surfacing as a Gloo or NCCL "Socket Timeout" much later.
void wait_for_every_rank(c10d::Store& store, const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  auto key = [](int r) { return "arrived/" + std::to_string(r); };
  std::array<char, 256> host{};
  gethostname(host.data(), host.size() - 1);
  const std::string me = std::string(host.data()) + " pid " + std::to_string(getpid());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  try {
    store.set(key(launch.rank), std::vector<uint8_t>(me.begin(), me.end()));
    std::vector<int> missing;
    for (int r = 0; r < launch.size; ++r) missing.push_back(r);
    while (true) {
      missing.erase(std::remove_if(missing.begin(), missing.end(), [&](int r) { return store.check({key(r)}); }),
                    missing.end());
      if (missing.empty()) return;
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::string names;
    for (int r : missing) names += (names.empty() ? "" : ", ") + std::to_string(r);
    throw CommunicationError(
        "rank " + std::to_string(launch.rank) + " (" + me + "): " + (missing.size() == 1 ? "rank " : "ranks ") +
        names + " of " + std::to_string(launch.size) + " did not arrive within " +
        std::to_string(timeout.count() / 1000) + " s (comm.timeout_s) at the rendezvous store on " +
        store_address(launch) + " (MASTER_ADDR:MASTER_PORT); start every rank with WORLD_SIZE=" +
        std::to_string(launch.size) + " and the same MASTER_ADDR and MASTER_PORT");
  } catch (const CommunicationError&) {
    throw;
  } catch (const std::exception& e) {
    throw CommunicationError("rank " + std::to_string(launch.rank) + ": the rendezvous store on " +
                             store_address(launch) + " failed: " + without_backtrace(e));
  }
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

// Two SIGTERMs to our parent when it is Open MPI's launcher or daemon: the
// first starts its abort, the second makes it stop waiting for daemons it
// cannot reach and end (tested across two network namespaces with a cut
// link: tests/multinode/). It forwards the signals to us: we ignore them, as
// this rank is already ending with its own exit code.
void end_mpi_launcher() {
  const pid_t parent = getppid();
  std::string name;
  std::ifstream("/proc/" + std::to_string(parent) + "/comm") >> name;
  if (name != "mpirun" && name != "mpiexec" && name != "orterun" && name != "orted" && name != "prterun" &&
      name != "prted")
    return;
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  ::kill(parent, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(parent, SIGTERM);
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
#ifdef MUONRUN_WITH_GLOO
    if (!device.is_cuda()) check_gloo_interface(launch.local_size < launch.size);
#endif
    store = connect_store(launch, timeout);
    wait_for_every_rank(*store, launch, timeout);
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
  // On the normal way out every rank has finished its collectives: shut the
  // communicator down cleanly (c10d's destroy_process_group). While an
  // exception unwinds, peers may be gone or work outstanding, and dropping
  // it aborts instead (for NCCL, ProcessGroupNCCL's destructor).
  if (comm_ && std::uncaught_exceptions() == 0) {
    try {
      comm_->shutdown();
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: shutting the {} communicator down: {}", rank(), comm_->name(), e.what());
    }
  }
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

std::vector<int64_t> World::all_gather_words(const std::vector<int64_t>& words) const {
  if (!comm_) return words;
  const auto n = static_cast<int64_t>(words.size());
  auto local = torch::tensor(words, torch::kLong).to(comm_->device());
  auto all = torch::empty({size() * n}, local.options());
  comm_->all_gather(local, all)->wait();
  all = all.to(torch::kCPU);
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
}

void World::abort(int exit_code, bool links_may_be_down) const {
  if (!mpi_initialised_) return;
  if (links_may_be_down) end_mpi_launcher();
  MPI_Abort(MPI_COMM_WORLD, exit_code);
}

}  // namespace muonrun
