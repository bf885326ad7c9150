#include "comm/launch.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace muonrun {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback, bool required = false) {
  const char* v = env(name);
  if (!v) {
    if (required) throw std::runtime_error(std::string("environment variable ") + name + " is not set");
    return fallback;
  }
  try {
    size_t used = 0;
    int value = std::stoi(v, &used);
    if (used != std::string(v).size() || value < 0) throw std::invalid_argument(v);
    return value;
  } catch (const std::exception&) {
    throw std::runtime_error(std::string("environment variable ") + name + "='" + v +
                             "' is not a non-negative integer");
  }
}

// SLURM_TASKS_PER_NODE looks like "4(x2),3": the first count is ours when
// the job is homogeneous, which is what our batch script asks for.
int slurm_tasks_per_node() {
  if (env("SLURM_NTASKS_PER_NODE")) return env_int("SLURM_NTASKS_PER_NODE", 1);
  if (const char* v = env("SLURM_TASKS_PER_NODE")) return std::max(1, std::atoi(v));
  return 1;
}

}  // namespace

const char* launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::Single: return "single process";
    case Launcher::Mpi: return "mpirun";
    case Launcher::Torchrun: return "torchrun";
    case Launcher::Slurm: return "srun";
  }
  return "?";
}

LaunchInfo detect_launch() {
  LaunchInfo info;
  if (env("OMPI_COMM_WORLD_SIZE")) {
    info.launcher = Launcher::Mpi;
    info.rank = env_int("OMPI_COMM_WORLD_RANK", 0, true);
    info.size = env_int("OMPI_COMM_WORLD_SIZE", 1, true);
    info.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    info.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    // Optional: the address where rank 0 opens the store of NCCL runs.
    if (const char* addr = env("MASTER_ADDR")) info.master_addr = addr;
    return info;
  }
  if (env("RANK") && env("WORLD_SIZE")) {
    info.launcher = Launcher::Torchrun;
    info.rank = env_int("RANK", 0, true);
    info.size = env_int("WORLD_SIZE", 1, true);
    info.local_rank = env_int("LOCAL_RANK", 0);
    info.local_size = env_int("LOCAL_WORLD_SIZE", 1);
    const char* agent_store = env("TORCHELASTIC_USE_AGENT_STORE");
    info.store_hosted_by_agent = agent_store && std::string(agent_store) == "True";
    info.store_prefix = "muonrun/attempt_" + std::to_string(env_int("TORCHELASTIC_RESTART_COUNT", 0)) + "/";
  } else if (env("SLURM_PROCID") && env_int("SLURM_NTASKS", 1) > 1) {
    info.launcher = Launcher::Slurm;
    info.rank = env_int("SLURM_PROCID", 0, true);
    info.size = env_int("SLURM_NTASKS", 1, true);
    info.local_rank = env_int("SLURM_LOCALID", 0);
    info.local_size = slurm_tasks_per_node();
    info.store_prefix = "muonrun/job_" + std::string(env("SLURM_JOB_ID") ? env("SLURM_JOB_ID") : "0") + "/";
  } else {
    return info;  // one process
  }
  const char* addr = env("MASTER_ADDR");
  if (!addr)
    throw std::runtime_error(std::string("launched by ") + launcher_name(info.launcher) +
                             " but MASTER_ADDR is not set (the address of rank 0's host)");
  info.master_addr = addr;
  info.master_port = env_int("MASTER_PORT", 29500);
  if (info.master_port == 0 || info.master_port > 65535)
    throw std::runtime_error("MASTER_PORT=" + std::to_string(info.master_port) + " is not a TCP port");
  if (info.rank >= info.size)
    throw std::runtime_error("rank " + std::to_string(info.rank) + " is not below the world size " +
                             std::to_string(info.size));
  return info;
}

}  // namespace muonrun
