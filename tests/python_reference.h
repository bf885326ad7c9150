// Comparing tensors with the tests' PyTorch references (run by
// tests/reference_script.h): shared by test_reference.cpp (record 11, the
// optimizers, the tokenizer), test_record29.cpp and test_record29_optim.cpp. Errors are norm-relative per tensor,
// ||ours - ref||_2 / ||ref||_2 in float64 (the absolute norm when the
// reference is zero): one number per tensor that does not blow up on entries
// that happen to be near zero, as an elementwise relative error would.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <utility>

#include "tests/reference_script.h"

namespace muonrun::tests {

using Tensors = std::map<std::string, torch::Tensor>;

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
