// Who started this process, and where it sits among the ranks, read from the
// environment each launcher sets:
//   mpirun (Open MPI)  OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}
//   torchrun           RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//                      MASTER_ADDR, MASTER_PORT (TORCHELASTIC_* when the agent hosts the store)
//   srun (Slurm)       SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
//                      SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE, plus
//                      MASTER_ADDR and MASTER_PORT exported by the batch script
//   nothing            one process, no communication
#pragma once

#include <string>

namespace muonrun {

enum class Launcher { Single, Mpi, Torchrun, Slurm };

struct LaunchInfo {
  Launcher launcher = Launcher::Single;
  int rank = 0, size = 1;
  int local_rank = 0, local_size = 1;
  // Rendezvous through a c10d TCPStore (torchrun, Slurm).
  std::string master_addr;
  int master_port = 29500;
  bool store_hosted_by_agent = false;  // torchrun's agent already runs the store
  std::string store_prefix;            // separates restarts of an elastic job
};

// Reads the environment; throws naming the variable when one is malformed or
// a needed one is missing.
LaunchInfo detect_launch();

const char* launcher_name(Launcher launcher);

}  // namespace muonrun
