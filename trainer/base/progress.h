// Progress of long work (data preparation, evaluation) with a rate and an ETA.
//
// On a terminal it redraws one line in place; otherwise (logs, CI) it writes a
// plain line through the logger at most every `interval_s` seconds, so files
// stay readable. Only the process that owns the console (rank 0, see
// owns_console() in logging.h) draws on the terminal; the other ranks' lines
// go to their log files only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace muonrun {

class Progress {
 public:
  // `total` = 0 means unknown (no percentage or ETA); `unit` names what is
  // counted ("MB", "tokens"). A `transient` progress (evaluation inside a
  // training log) erases its terminal line when done and prints no summary.
  Progress(std::string label, double total, std::string unit, double interval_s = 10.0,
           bool transient = false);
  ~Progress();

  // Reports `done` units finished so far (monotonic).
  void update(double done);
  // Prints the final line once.
  void finish();

 private:
  void print(bool final);

  std::string label_;
  double total_;
  std::string unit_;
  double interval_s_;
  bool transient_;
  bool terminal_;
  bool finished_ = false;
  bool printed_ = false;
  double done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace muonrun
