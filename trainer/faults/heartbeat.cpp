#include "trainer/faults/heartbeat.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

namespace muonrun {
namespace {

constexpr auto kInterval = std::chrono::seconds(1);
constexpr double kStaleSeconds = 3.0;  // three missed refreshes

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Dead, or a zombie nobody has reaped yet (a launcher waiting on another child).
bool process_gone(long pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string skip, state;
  stat >> skip >> skip >> state;  // pid, (comm), state
  return state == "Z" || state == "X";
}

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

}  // namespace

Heartbeat::Heartbeat(const std::string& run_dir, int rank, int world)
    : dir_(run_dir + "/ranks"), rank_(rank), world_(world) {
  std::filesystem::create_directories(dir_);
  write();
  writer_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, kInterval, [this] { return stopping_; })) write();
  });
}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void Heartbeat::beat(int64_t step) {
  step_ = step;
  write();
}

void Heartbeat::write() const {
  // Not fsynced: a heartbeat only matters while the job is alive.
  const std::string path = dir_ + "/rank" + std::to_string(rank_);
  const std::string tmp = path + ".tmp" + std::to_string(::gettid());
  {
    std::ofstream out(tmp);
    out << host_name() << " " << ::getpid() << " " << step_.load() << " " << std::fixed << now_s() << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

std::string Heartbeat::describe_laggards() const {
  const std::string here = host_name();
  std::string out;
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    std::string host;
    long pid = 0;
    long long step = -1;
    double time = 0;
    std::ifstream(dir_ + "/rank" + std::to_string(r)) >> host >> pid >> step >> time;
    const double age = now_s() - time;
    const bool gone = host == here && pid > 0 && process_gone(pid);
    if (!gone && age < kStaleSeconds) continue;
    char line[256];
    std::snprintf(line, sizeof line, "%srank %d (pid %ld on %s) %s, last seen %.0f s ago after step %lld",
                  out.empty() ? "" : "; ", r, pid, host.c_str(), gone ? "has died" : "stopped responding", age,
                  step);
    out += line;
  }
  return out.empty() ? "every other rank is alive (a network problem?)" : out;
}

}  // namespace muonrun
