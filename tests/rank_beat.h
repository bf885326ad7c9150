// What a rank last published in its run directory's ranks/rank<r> file
// (trainer/faults/heartbeat.cpp writes: host, pid, step, counter), for the
// tests that signal a rank or wait for a step: test_reliability, test_multinode.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace muonrun::tests {

struct RankBeat {
  pid_t pid = 0;
  long long step = -2;  // -2: no file yet
};

inline RankBeat read_beat(const std::filesystem::path& run_dir, int rank) {
  RankBeat beat;
  std::string host;
  std::ifstream(run_dir / "ranks" / ("rank" + std::to_string(rank))) >> host >> beat.pid >> beat.step;
  return beat;
}

}  // namespace muonrun::tests
