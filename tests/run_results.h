// Reading what a training run left in its run directory, for tests that
// compare runs: the per-step metrics and the final weights.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "trainer/io/safetensors.h"
#include "trainer/io/checkpoint.h"
#include "trainer/base/json.h"

namespace muonrun::tests {

struct MetricLine {
  int64_t step;
  std::optional<double> train_loss, val_loss;
};

inline std::vector<MetricLine> read_metrics(const std::filesystem::path& path) {
  std::vector<MetricLine> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto v = json::parse(line, path.string());
    MetricLine m{v.find("step")->as_int64(), {}, {}};
    // A diverged loss is written as null.
    auto number = [](const json::Value* t) { return t->is_number() ? t->number : std::nan(""); };
    if (auto* t = v.find("train_loss")) m.train_loss = number(t);
    if (auto* t = v.find("val_loss")) m.val_loss = number(t);
    out.push_back(m);
  }
  return out;
}

// The weights of the newest checkpoint of a run directory.
inline SafetensorsFile final_weights(const std::filesystem::path& run_dir) {
  auto latest = find_latest_checkpoint(run_dir.string());
  if (!latest) throw std::runtime_error(run_dir.string() + ": no checkpoint");
  return load_safetensors(*latest + "/model.safetensors");
}

}  // namespace muonrun::tests
