// Logging for all ranks through spdlog's default logger.
//
// Rank 0 writes to the console; every rank writes to <run_dir>/log_rank<r>.txt
// when a run directory is given. Everything else in muonrun just calls
// spdlog::info / warn / error.
#pragma once

#include <string>

namespace muonrun {

// Console only (rank 0), before a run directory exists.
void init_console_logging(const std::string& level);

// Console on rank 0 plus a log file per rank in `run_dir` (created if needed).
void init_run_logging(int rank, const std::string& level, const std::string& run_dir);

}  // namespace muonrun
