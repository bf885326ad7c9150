// Each rank's sign of life, and what the survivors make of the others after
// a collective fails.
//
// The training loop itself moves a counter (beat() after each step, pulse()
// within long phases), so a rank whose main thread hangs stops counting even
// though the process lives on. A thread publishes the counter two ways:
//   - a TCP port on every address of the host: whoever connects gets one line
//     "muonrun-heartbeat <rank> <pid> <step> <counter> <idle_ms> <wait_ms>",
//     idle_ms being how long the counter has stood still and wait_ms how long
//     the rank has been blocked on a collective (-1: not; -2: it is
//     diagnosing a failure itself), both measured by
//     that rank's own steady clock; this works across hosts without a shared
//     filesystem;
//   - <run_dir>/ranks/rank<r> ("<host> <pid> <step> <counter>"), for people
//     and tests on the same host.
// The ranks swap their heartbeat addresses once at start-up (endpoint() /
// set_peers()). After a failure diagnose() asks every other rank twice and
// judges with its own clock only, never comparing clocks of two hosts:
//   dead     its host answers but its port is closed (the process is gone);
//   hung     it answers, its counter did not move and it is not waiting on a
//            collective (its loop is stuck: deadlock, endless data wait);
//   waiting  it answers, blocked on a collective like us;
//   frozen   its host accepted the connection but the process never answered
//            (stopped by a signal, or swapping);
//   unreachable  no answer from any of its addresses: the network or its host.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace muonrun {

class Heartbeat {
 public:
  Heartbeat(const std::string& run_dir, int rank);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // The loop finished `step`.
  void beat(int64_t step);
  // The loop is moving within a long phase (evaluation, checkpoint, data).
  void pulse();

  // This rank's heartbeat address (pid, port, IPv4 addresses, host name)
  // as kEndpointWords integers, for an all-gather across ranks.
  static constexpr int kEndpointWords = 16;
  std::vector<int64_t> endpoint() const;
  // Every rank's endpoint(), in rank order.
  void set_peers(const std::vector<int64_t>& endpoints);

  // What every other rank is doing now, one clause per rank that is not
  // healthy, e.g. "rank 1 (pid 4242 on node2, 10.0.0.2) has died: ...".
  // Takes up to about 6 s (two rounds of questions, 2 s apart; one round
  // when nobody answers the first).
  std::string diagnose() const;

 private:
  void serve();
  void write_file() const;

  std::string dir_, host_;
  int rank_;
  std::atomic<int64_t> step_{-1}, counter_{0}, moved_ms_{0};
  int listener_ = -1;
  uint16_t port_ = 0;
  struct Peer {
    long pid = 0;
    uint16_t port = 0;
    std::vector<uint32_t> addresses;  // network byte order
    std::string host;
  };
  std::vector<Peer> peers_;
  std::atomic<bool> stopping_{false};
  mutable std::atomic<bool> failing_{false};
  std::thread server_;
};

}  // namespace muonrun
