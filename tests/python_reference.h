// Running the tests' PyTorch references (tests/reference/*.py, by the Python
// of MUONRUN_PYTHON) and comparing tensors with them: shared by
// test_reference.cpp (record 11, the optimizers, the tokenizer) and
// test_record29.cpp. Errors are norm-relative per tensor,
// ||ours - ref||_2 / ||ref||_2 in float64 (the absolute norm when the
// reference is zero): one number per tensor that does not blow up on entries
// that happen to be near zero, as an elementwise relative error would.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_helpers.h"

namespace muonrun::tests {

using Tensors = std::map<std::string, torch::Tensor>;

inline const std::string kPython = MUONRUN_PYTHON;
inline const std::string kScripts = std::string(MUONRUN_SOURCE_DIR) + "/tests/reference/";

#define REQUIRE_PYTHON()                                                                               \
  do {                                                                                                 \
    if (::muonrun::tests::kPython.empty()) GTEST_SKIP() << "no Python with torch configured (MUONRUN_PYTHON)"; \
  } while (0)

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct ScriptRun {
  int rc;
  std::string output;  // stdout and stderr
};

// Runs tests/reference/<script> with `args` in `dir`.
inline ScriptRun run_script(const std::string& script, const std::vector<std::string>& args,
                            const std::filesystem::path& dir) {
  const std::filesystem::path log = dir / (script + ".log");
  std::string cmd = "cd " + quote(dir.string()) + " && " + quote(kPython) + " " + quote(kScripts + script);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " > " + quote(log.string()) + " 2>&1";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

// ||got - ref|| / ||ref|| in float64 (||got - ref|| when ref is zero).
inline double rel_error(const torch::Tensor& got, const torch::Tensor& ref) {
  auto g = got.to(torch::kDouble), r = ref.to(torch::kDouble);
  const double diff = (g - r).norm().item<double>(), norm = r.norm().item<double>();
  return norm > 0 ? diff / norm : diff;
}

// The largest per-tensor relative error of `ours` against `ref`, and its name
// (infinite when `ref` lacks a tensor).
inline std::pair<double, std::string> worst_error(const Tensors& ours, const Tensors& ref) {
  std::pair<double, std::string> worst{0.0, ""};
  for (const auto& [name, t] : ours) {
    auto it = ref.find(name);
    if (it == ref.end()) return {INFINITY, name + " (missing)"};
    const double e = rel_error(t, it->second);
    if (e > worst.first) worst = {e, name};
  }
  return worst;
}

inline std::string fmt(double x) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << x;
  return s.str();
}

}  // namespace muonrun::tests
