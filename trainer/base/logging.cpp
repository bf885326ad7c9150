#include "trainer/base/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <vector>

namespace muonrun {
namespace {

// Training lines follow the speedrun convention, so the console shows the
// bare message; files carry time and level for post-mortems.
constexpr const char* kConsolePattern = "%v";
constexpr const char* kFilePattern = "[%Y-%m-%d %H:%M:%S.%e] [%l] %v";

bool console_owner = true;

void install(std::vector<spdlog::sink_ptr> sinks, spdlog::level::level_enum level) {
  auto logger = std::make_shared<spdlog::logger>("muonrun", sinks.begin(), sinks.end());
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

spdlog::sink_ptr console_sink() {
  auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  sink->set_pattern(kConsolePattern);
  return sink;
}

}  // namespace

void init_console_logging(spdlog::level::level_enum level, int rank) {
  console_owner = rank == 0;
  std::vector<spdlog::sink_ptr> sinks;
  if (console_owner) sinks.push_back(console_sink());
  install(sinks, level);
}

void init_run_logging(int rank, spdlog::level::level_enum level, const std::string& run_dir) {
  console_owner = rank == 0;
  std::vector<spdlog::sink_ptr> sinks;
  if (rank == 0) sinks.push_back(console_sink());
  std::filesystem::create_directories(run_dir);
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
      run_dir + "/log_rank" + std::to_string(rank) + ".txt", /*truncate=*/false);
  file->set_pattern(kFilePattern);
  sinks.push_back(file);
  install(sinks, level);
}

bool owns_console() { return console_owner; }

}  // namespace muonrun
