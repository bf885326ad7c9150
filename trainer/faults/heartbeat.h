// Each rank's sign of life: <run_dir>/ranks/rank<r> holds its host, process
// id, last finished step and the time it last wrote, refreshed every second
// by a thread of its own. When a collective times out or fails, the
// survivors read these files to name the rank that died (its process is
// gone) or stopped responding (its file went stale). Tests use the pids to
// send signals to ranks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace muonrun {

class Heartbeat {
 public:
  Heartbeat(const std::string& run_dir, int rank, int world);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // Records that this rank finished `step` and writes it out.
  void beat(int64_t step);
  // The ranks that look dead or stuck, e.g. "rank 2 (pid 123 on node1) last
  // seen 15 s ago after step 40".
  std::string describe_laggards() const;

 private:
  void write() const;

  std::string dir_;
  int rank_, world_;
  std::atomic<int64_t> step_{-1};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace muonrun
