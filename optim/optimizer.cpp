#include "optim/optimizer.h"

#include "optim/schedule.h"

namespace muonrun {
namespace {

std::vector<AdamWGroup> adam_groups(const ParamGroups& groups, const AdamConfig& adam) {
  std::vector<AdamWGroup> out;
  if (!groups.embeddings.empty()) out.push_back({"embed", adam.embed_lr, groups.embeddings});
  if (!groups.heads.empty()) out.push_back({"head", adam.head_lr, groups.heads});
  if (!groups.scalars.empty()) out.push_back({"scalar", adam.scalar_lr, groups.scalars});
  return out;
}

}  // namespace

const torch::Tensor& state_tensor(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& key, const torch::Tensor& like) {
  auto it = tensors.find(key);
  if (it == tensors.end()) throw std::runtime_error("optimizer state has no tensor " + key);
  if (like.defined() && it->second.sizes() != like.sizes())
    throw std::runtime_error("optimizer state tensor " + key + " has shape " +
                             c10::str(it->second.sizes()) + ", expected " + c10::str(like.sizes()));
  return it->second;
}

Optimizer::Optimizer(const torch::nn::Module& model, const OptimConfig& optim,
                     const ScheduleConfig& schedule, int64_t total_steps)
    : adam(adam_groups(group_parameters(model), optim.adam), optim.adam),
      muon(group_parameters(model).matrices, optim.muon),
      params_(model.parameters()),
      schedule_(schedule),
      total_steps_(total_steps) {}

double Optimizer::lr_multiplier(int64_t step) const {
  return muonrun::lr_multiplier(step, total_steps_, schedule_);
}

void Optimizer::step(int64_t step) {
  const double multiplier = lr_multiplier(step);
  adam.step(multiplier);
  muon.step(multiplier, step);
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.mutable_grad().reset();
}

std::vector<std::pair<std::string, torch::Tensor>> Optimizer::state() const {
  auto out = adam.state();
  for (auto& entry : muon.state()) out.push_back(std::move(entry));
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  adam.load_state(tensors);
  muon.load_state(tensors);
}

}  // namespace muonrun
