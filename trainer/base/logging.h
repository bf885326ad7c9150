// Logging for all ranks through spdlog's default logger.
//
// Rank 0 writes to the console; every rank writes to <run_dir>/log_rank<r>.txt
// when a run directory is given. Everything else in muonrun just calls
// spdlog::info / warn / error. The level comes from run.log_level (see
// spdlog_level() in trainer/config/config.h).
#pragma once

#include <spdlog/common.h>

#include <string>

namespace muonrun {

// Console only, before a run directory exists (or for tools that keep no
// files): rank 0 writes to it, other ranks log nothing.
void init_console_logging(spdlog::level::level_enum level, int rank = 0);

// Console on rank 0 plus a log file per rank in `run_dir` (created if needed).
void init_run_logging(int rank, spdlog::level::level_enum level, const std::string& run_dir);

// Whether this process has the console: false on ranks other than 0 once
// either init function was told the rank. Progress bars and results print
// only where it is true, so that mpirun's ranks do not interleave on one
// terminal.
bool owns_console();

}  // namespace muonrun
