#include "trainer/metrics.h"

#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <stdexcept>

namespace muonrun {
namespace {

// JSON has no NaN or infinity: a diverged loss is written as null.
std::string number(double x) { return std::isfinite(x) ? fmt::format("{}", x) : "null"; }

}  // namespace

std::string train_line(const StepMetrics& m) {
  return fmt::format("step:{}/{} train_loss:{:.4f} train_time:{:.0f}ms step_avg:{:.2f}ms tokens/s:{:.0f}",
                     m.step, m.total_steps, m.train_loss.value_or(0), m.train_time_ms,
                     m.step_avg_ms, m.tokens_per_s);
}

std::string val_line(const StepMetrics& m) {
  return fmt::format("step:{}/{} val_loss:{:.4f} train_time:{:.0f}ms step_avg:{:.2f}ms", m.step,
                     m.total_steps, m.val_loss.value_or(0), m.train_time_ms, m.step_avg_ms);
}

MetricsFile::MetricsFile(const std::string& path) : path_(path), out_(path, std::ios::app) {
  if (!out_) throw std::runtime_error(path + ": cannot open for writing");
}

void MetricsFile::write(const StepMetrics& m) {
  std::string line = fmt::format("{{\"step\":{}", m.step);
  if (m.train_loss) line += ",\"train_loss\":" + number(*m.train_loss);
  if (m.val_loss) line += ",\"val_loss\":" + number(*m.val_loss);
  line += ",\"train_time_ms\":" + number(m.train_time_ms) + ",\"step_avg_ms\":" +
          number(m.step_avg_ms) + ",\"tokens_per_s\":" + number(m.tokens_per_s) +
          ",\"lr_multiplier\":" + number(m.lr_multiplier) + "}\n";
  out_ << line << std::flush;
  if (!out_) throw std::runtime_error(path_ + ": write failed");
}

}  // namespace muonrun
