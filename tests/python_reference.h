// Comparing tensors with the tests' PyTorch references (run by
// tests/reference_script.h): shared by test_reference.cpp (record 11, the
// optimizers, the tokenizer) and the record-29 and record-50 tests, with the
// runs of the optimizer references and the state-dict round trip they share.
// Errors are norm-relative per tensor,
// ||ours - ref||_2 / ||ref||_2 in float64 (the absolute norm when the
// reference is zero): one number per tensor that does not blow up on entries
// that happen to be near zero, as an elementwise relative error would.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/reference_script.h"
#include "trainer/io/safetensors.h"

namespace muonrun::tests {

using Tensors = std::map<std::string, torch::Tensor>;

// Copies of every parameter of `model` by name, and a model set from such copies
// (one model's weights, as the optimizer tests start each run from them).
inline Tensors weights_of(const torch::nn::Module& model) {
  Tensors out;
  for (const auto& item : model.named_parameters()) out[item.key()] = item.value().detach().clone();
  return out;
}
inline void set_weights(torch::nn::Module& model, const Tensors& weights) {
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) item.value().copy_(weights.at(item.key()));
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

// Worst relative error, over steps t and tensors, of the displacement
// W_t - W_0 (what an optimizer did; W_0 itself would hide it), against the
// reference's step.<t>.<name> viewed in our shapes, and where.
inline std::pair<double, std::string> worst_displacement(const Tensors& init, const std::vector<Tensors>& ours,
                                                         const Tensors& ref) {
  std::pair<double, std::string> worst{0.0, ""};
  for (size_t t = 0; t < ours.size(); ++t)
    for (const auto& [name, w] : ours[t]) {
      const auto key = "step." + std::to_string(t) + "." + name;
      if (!ref.count(key)) return {INFINITY, key + " (missing)"};
      const double e = rel_error(w - init.at(name), ref.at(key).view(w.sizes()) - init.at(name));
      if (e > worst.first) worst = {e, key};
    }
  return worst;
}

// An optimizer reference (record29_optim.py, record50_optim.py) over the same
// weights and gradients: writes param.<name> and grad.<t>.<name> (each in the
// record's shape, `record_shape`), runs `script --in --out --first-step`, and
// returns its step.<t>.<name> weights and schedule (empty when it failed,
// `failure` then its output).
inline Tensors run_optimizer_reference(const std::string& script, const std::filesystem::path& dir,
                                       const Tensors& init, const std::vector<Tensors>& grads, int64_t first_step,
                                       std::string& failure,
                                       const std::function<torch::Tensor(const torch::Tensor&)>& record_shape =
                                           [](const torch::Tensor& t) { return t; }) {
  std::vector<std::pair<std::string, torch::Tensor>> input;
  for (const auto& [name, w] : init) input.emplace_back("param." + name, record_shape(w).contiguous());
  for (size_t t = 0; t < grads.size(); ++t)
    for (const auto& [name, g] : grads[t])
      input.emplace_back("grad." + std::to_string(t) + "." + name, record_shape(g).contiguous());
  const auto in = dir / "input.safetensors", out = dir / "output.safetensors";
  save_safetensors(in.string(), input);
  const auto run = run_script(script, {"--in", in.string(), "--out", out.string(), "--first-step",
                                       std::to_string(first_step)},
                              dir);
  if (run.rc != 0) {
    failure = run.output;
    return {};
  }
  return load_safetensors(out.string()).tensors;
}

// A model reference (record29.py, record50.py) on dir's config.json,
// weights.safetensors and batch.safetensors, with `extra` arguments: its
// loss and grad.<name> tensors (empty when it failed, `failure` then its output).
inline Tensors run_model_reference(const std::string& script, const std::filesystem::path& dir,
                                   const std::vector<std::string>& extra, std::string& failure) {
  const std::string out = (dir / "reference.safetensors").string();
  std::vector<std::string> args{"--config", (dir / "config.json").string(), "--weights",
                                (dir / "weights.safetensors").string(), "--batch",
                                (dir / "batch.safetensors").string(), "--out", out};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto run = run_script(script, args, dir);
  if (run.rc != 0) {
    failure = run.output;
    return {};
  }
  return load_safetensors(out).tensors;
}

// `script --check-state-dict` loads the weights file into the record's module
// with load_state_dict(strict=True) and writes its state_dict back: "" when
// every tensor comes back unchanged, else what differs.
inline std::string state_dict_round_trip(const std::string& script, const std::filesystem::path& dir) {
  const auto weights = dir / "weights.safetensors", back = dir / "back.safetensors";
  const auto run = run_script(script,
                              {"--config", (dir / "config.json").string(), "--weights", weights.string(),
                               "--check-state-dict", "--out", back.string()},
                              dir);
  if (run.rc != 0) return "the script failed: " + run.output;
  const auto ours = load_safetensors(weights.string()).tensors;
  const auto theirs = load_safetensors(back.string()).tensors;
  if (ours.size() != theirs.size())
    return std::to_string(theirs.size()) + " tensors came back of " + std::to_string(ours.size());
  for (const auto& [name, t] : ours)
    if (!theirs.count(name) || !torch::equal(t, theirs.at(name))) return name + " did not come back unchanged";
  return "";
}

inline std::string fmt(double x) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << x;
  return s.str();
}

}  // namespace muonrun::tests
