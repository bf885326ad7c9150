#include "optim/optimizer.h"

#include <algorithm>

#include "optim/schedule.h"

namespace muonrun {
namespace {

std::vector<AdamWGroup> adam_groups(const ParamGroups& groups, const OptimConfig& optim) {
  std::vector<AdamWGroup> out;
  const auto& adam = optim.adam;
  if (!groups.embeddings.empty()) out.push_back({"embed", adam.embed_lr, groups.embeddings});
  if (!groups.heads.empty()) out.push_back({"head", adam.head_lr, groups.heads});
  if (!groups.scalars.empty()) out.push_back({"scalar", adam.scalar_lr, groups.scalars});
  if (optim.matrix_optimizer == "adamw" && !groups.matrices.empty())
    out.push_back({"matrix", adam.matrix_lr, groups.matrices});
  return out;
}

bool owner_mode(const Config& config, Communicator* comm) {
  return comm && config.optim.matrix_optimizer == "muon" && config.optim.muon.distribute == "owner";
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

Optimizer::Optimizer(const torch::nn::Module& model, const Config& config, Communicator* comm)
    : adam(adam_groups(group_parameters(model), config.optim), config.optim.adam),
      comm_(comm),
      params_(model.parameters()),
      matrices_(group_parameters(model).matrices),
      schedule_(config.schedule),
      total_steps_(config.train.steps) {
  const bool use_muon = config.optim.matrix_optimizer == "muon";
  const bool owner = owner_mode(config, comm);

  // Index of each parameter in registration order; gradients become ready in
  // roughly the reverse order, which is the order units are planned in.
  std::map<const void*, int> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].unsafeGetTensorImpl()] = static_cast<int>(i);
  auto index_of = [&](const torch::Tensor& t) { return index.at(t.unsafeGetTensorImpl()); };

  std::vector<bool> owned;
  if (owner) {
    std::vector<size_t> by_readiness(matrices_.size());
    for (size_t i = 0; i < by_readiness.size(); ++i) by_readiness[i] = matrices_.size() - 1 - i;
    std::vector<MatrixShape> shapes;
    for (size_t i : by_readiness) shapes.push_back({matrices_[i].tensor.size(0), matrices_[i].tensor.size(1)});
    auto plan = plan_muon_ownership(shapes, comm->size(), config.optim.muon.ns_steps);
    ownership_ = std::make_unique<MuonOwnership>();
    ownership_->flops_per_rank = plan.flops_per_rank;
    ownership_->owner.assign(matrices_.size(), -1);
    for (size_t k = 0; k < by_readiness.size(); ++k) ownership_->owner[by_readiness[k]] = plan.owner[k];
    for (const auto& shard : plan.shards) {
      MuonShardPlan mapped{shard.slots};
      for (int& slot : mapped.slots)
        if (slot >= 0) slot = static_cast<int>(by_readiness[slot]);
      ownership_->shards.push_back(mapped);
    }
    for (int o : ownership_->owner) owned.push_back(o == comm->rank());
  }
  if (use_muon) muon = std::make_unique<Muon>(matrices_, config.optim.muon, owned);
  if (!comm) return;

  // Gradient units: buckets for everything all-reduced, shards for owned matrices.
  std::vector<int> bucketed;
  for (const auto& group : adam.groups())
    for (const auto& p : group.params) bucketed.push_back(index_of(p.tensor));
  if (use_muon && !owner)
    for (const auto& m : matrices_) bucketed.push_back(index_of(m.tensor));
  std::sort(bucketed.rbegin(), bucketed.rend());
  auto units = plan_buckets(params_, bucketed, static_cast<int64_t>(config.comm.bucket_mb * (1 << 20)));
  for (size_t u = 0; u < units.size(); ++u) bucket_units_.push_back(u);
  if (owner) {
    for (const auto& shard : ownership_->shards) {
      GradientUnit unit{GradientUnit::Kind::Shard, {}};
      for (int m : shard.slots) unit.params.push_back(m >= 0 ? index_of(matrices_[m].tensor) : -1);
      shard_units_.push_back(units.size());
      shard_matrix_of_slot_.push_back(shard.slots[comm->rank()]);
      units.push_back(unit);
    }
  }
  reducer_ = std::make_unique<GradientReducer>(*comm, params_, units);
}

double Optimizer::lr_multiplier(int64_t step) const {
  return muonrun::lr_multiplier(step, total_steps_, schedule_);
}

void Optimizer::begin_backward(bool last_micro_step) {
  if (reducer_) reducer_->begin_backward(last_micro_step);
}

void Optimizer::end_backward() {
  if (reducer_) reducer_->end_backward();
}

void Optimizer::step(int64_t step) {
  const double multiplier = lr_multiplier(step);
  for (size_t u : bucket_units_) reducer_->wait_bucket(u);
  adam.step(multiplier);
  if (!muon) return;
  if (ownership_) owner_muon_step(step, multiplier);
  else muon->step(multiplier, step);
}

void Optimizer::owner_muon_step(int64_t step, double multiplier) {
  torch::NoGradGuard no_grad;
  const MuonStep hyper = muon->step_hyper(multiplier, step);
  struct Gather {
    size_t shard;
    torch::Tensor output;
    std::unique_ptr<Work> work;
  };
  std::vector<Gather> gathers;
  // Each owner updates its matrix of a shard, then shares it; the all-gather
  // of one shard runs while the next shard's Newton-Schulz computes.
  for (size_t s = 0; s < shard_units_.size(); ++s) {
    const int mine = shard_matrix_of_slot_[s];
    torch::Tensor grad = reducer_->wait_shard(shard_units_[s]);
    const auto& slots = ownership_->shards[s].slots;
    const auto& like = matrices_[*std::find_if(slots.begin(), slots.end(), [](int m) { return m >= 0; })].tensor;
    torch::Tensor local;
    if (mine >= 0) {
      muon->update(static_cast<size_t>(mine), grad, hyper);
      local = matrices_[mine].tensor.reshape({-1});
    } else {
      local = torch::zeros({like.numel()}, like.options());
    }
    auto output = torch::empty({comm_->size(), like.numel()}, like.options());
    gathers.push_back({s, output, comm_->all_gather(local.contiguous(), output)});
  }
  for (auto& g : gathers) {
    g.work->wait();
    const auto& slots = ownership_->shards[g.shard].slots;
    for (int r = 0; r < comm_->size(); ++r)
      if (slots[r] >= 0 && r != comm_->rank())
        matrices_[slots[r]].tensor.copy_(g.output[r].view(matrices_[slots[r]].tensor.sizes()));
  }
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.mutable_grad().reset();
}

std::vector<std::pair<std::string, torch::Tensor>> Optimizer::state() const {
  auto out = adam.state();
  if (muon)
    for (auto& entry : muon->state()) out.push_back(std::move(entry));
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  adam.load_state(tensors);
  if (muon) muon->load_state(tensors);
}

}  // namespace muonrun
