// Whether this process is blocked waiting for a collective, and since when
// (its own steady clock). A heartbeat reports it, so that a rank asked "are
// you alive?" after a failure can tell "waiting for the others, like you"
// from "my training loop is stuck" (trainer/faults/heartbeat.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace muonrun {

inline std::atomic<int64_t> collective_wait_since_ms{0};  // 0: not waiting

inline int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Marks the host as blocked on a collective for the scope's lifetime.
class CollectiveWait {
 public:
  CollectiveWait() { collective_wait_since_ms = steady_now_ms(); }
  ~CollectiveWait() { collective_wait_since_ms = 0; }
  CollectiveWait(const CollectiveWait&) = delete;
  CollectiveWait& operator=(const CollectiveWait&) = delete;
};

// How long this process has been blocked on a collective, -1 if it is not.
inline int64_t collective_wait_ms() {
  const int64_t since = collective_wait_since_ms.load();
  return since == 0 ? -1 : steady_now_ms() - since;
}

}  // namespace muonrun
