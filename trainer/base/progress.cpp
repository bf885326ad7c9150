#include "trainer/base/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

#include "trainer/base/logging.h"

namespace muonrun {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

Progress::Progress(std::string label, double total, std::string unit, double interval_s,
                   bool transient)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      interval_s_(interval_s),
      transient_(transient),
      terminal_(owns_console() && isatty(STDOUT_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

Progress::~Progress() {
  if (transient_ && terminal_ && printed_) {
    std::fputs("\r\033[K", stdout);  // leave the terminal as it was
    std::fflush(stdout);
  } else if (!finished_ && terminal_ && printed_) {
    std::fputs("\n", stdout);
  }
}

void Progress::update(double done) {
  done_ = done;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  // Terminals redraw a few times a second; logs get a line per interval.
  if (since >= (terminal_ ? 0.25 : interval_s_)) {
    last_print_ = now;
    print(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!transient_) print(true);
}

void Progress::print(bool final) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? done_ / elapsed : 0;
  char line[256];
  if (total_ > 0 && !final) {
    double eta = rate > 0 ? (total_ - done_) / rate : -1;
    std::snprintf(line, sizeof line, "%s: %5.1f%% (%.1f/%.1f %s) %.2f %s/s ETA %s",
                  label_.c_str(), 100.0 * done_ / total_, done_, total_, unit_.c_str(), rate,
                  unit_.c_str(), format_duration(eta).c_str());
  } else {
    std::snprintf(line, sizeof line, "%s: %.1f %s in %s, %.2f %s/s%s", label_.c_str(), done_,
                  unit_.c_str(), format_duration(elapsed).c_str(), rate, unit_.c_str(),
                  final ? " (done)" : "");
  }
  printed_ = true;
  if (terminal_) {
    std::fprintf(stdout, "\r\033[K%s%s", line, final ? "\n" : "");
    std::fflush(stdout);
  } else {
    spdlog::info("{}", line);
  }
}

}  // namespace muonrun
