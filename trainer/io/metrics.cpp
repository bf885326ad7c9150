#include "trainer/io/metrics.h"

#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "trainer/base/json.h"

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

std::vector<StepMetrics> read_metrics(const std::string& path) {
  std::vector<StepMetrics> out;
  std::ifstream in(path);
  auto number_or_nan = [](const json::Value* v) {
    return v->is_number() ? v->number : std::numeric_limits<double>::quiet_NaN();
  };
  int64_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    const std::string where = path + " line " + std::to_string(++line_number);
    const auto v = json::parse(line, where);
    const json::Value* step = v.is_object() ? v.find("step") : nullptr;
    if (!step) throw std::runtime_error(where + ": expected an object with a \"step\"");
    StepMetrics m;
    try {
      m.step = step->as_int64();
    } catch (const json::ParseError& e) {
      throw std::runtime_error(where + ": \"step\": " + e.what());
    }
    if (const auto* t = v.find("train_loss")) m.train_loss = number_or_nan(t);
    if (const auto* t = v.find("val_loss")) m.val_loss = number_or_nan(t);
    if (const auto* t = v.find("train_time_ms")) m.train_time_ms = number_or_nan(t);
    if (const auto* t = v.find("step_avg_ms")) m.step_avg_ms = number_or_nan(t);
    out.push_back(m);
  }
  return out;
}

}  // namespace muonrun
