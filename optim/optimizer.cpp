#include "optim/optimizer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "optim/presets.h"
#include "optim/schedule.h"
#include "trainer/base/phase_timer.h"

namespace muonrun {
namespace {

std::vector<AdamWGroup> adam_groups(const ParamGroups& groups, const OptimConfig& optim) {
  std::vector<AdamWGroup> out;
  const auto& adam = optim.adam;
  if (!groups.embeddings.empty()) out.push_back({"embed", adam.embed_lr, groups.embeddings, adam.embed_eps});
  if (!groups.heads.empty()) out.push_back({"head", adam.head_lr, groups.heads, adam.head_eps});
  if (!groups.scalars.empty()) out.push_back({"scalar", adam.scalar_lr, groups.scalars, adam.scalar_eps});
  if (optim.matrix_optimizer == "adamw" && !groups.matrices.empty())
    out.push_back({"matrix", adam.matrix_lr, groups.matrices, adam.matrix_eps});
  return out;
}

// Rejects combinations that have no meaning (the schema checks each key alone).
void check_variant(const OptimConfig& optim, const SteepestVariant& variant) {
  if (is_plain(variant) && !optim.momo.enabled) return;  // the recipe
  if (optim.matrix_optimizer != "muon")
    throw ConfigError("optim.steepest and optim.momo combine Muon with AdamW: they need optim.matrix_optimizer = muon");
  if (!(optim.muon.lr > 0))
    throw ConfigError("optim.steepest and optim.momo weigh each group by its lr relative to optim.muon.lr, which must be > 0");
  if (optim.adam.nested)
    throw ConfigError("optim.adam.nested: the nested EMA is no LMO of a norm at the momentum; "
                      "it needs the default optim.steepest and no optim.momo");
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
      optim_(resolve_preset(config.optim)),
      variant_(steepest_variant(optim_.steepest)),
      comm_(comm),
      params_(model.parameters()),
      matrices_(group_parameters(model).matrices),
      schedule_(config.schedule),
      total_steps_(config.train.steps) {
  check_variant(optim_, variant_);
  if (optim_.momo.enabled) momo_ = std::make_unique<Momo>(optim_.momo);
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
  if (use_muon) muon = std::make_unique<Muon>(matrices_, optim_.muon, owned);
  if (!owner)
    for (size_t i = 0; i < matrices_.size(); ++i) slots_.push_back({0, static_cast<int>(i)});
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
      slots_.push_back({shard_units_.size(), shard.slots[comm->rank()]});
      shard_units_.push_back(units.size());
      units.push_back(unit);
    }
  }
  reducer_ = std::make_unique<GradientReducer>(*comm, params_, units);
}

double Optimizer::lr_multiplier(int64_t step) const {
  return lr_scale_ * muonrun::lr_multiplier(step, total_steps_, schedule_);
}

void Optimizer::begin_backward(bool last_micro_step) {
  if (reducer_) reducer_->begin_backward(last_micro_step);
}

void Optimizer::end_backward() {
  if (reducer_) reducer_->end_backward();
}

void Optimizer::step(int64_t step, std::optional<double> loss) {
  torch::NoGradGuard no_grad;
  const double multiplier = lr_multiplier(step);
  if (reducer_) {
    PhaseScope wait(timer_, Phase::CommWait);
    for (size_t u : bucket_units_) reducer_->wait_bucket(u);
  }
  if (!muon) {
    PhaseScope time(timer_, Phase::AdamW);
    return adam.step(multiplier);
  }
  const MuonStep hyper = muon->step_hyper(multiplier, step);
  if (!is_plain(variant_) || momo_) return variant_step(step, multiplier, hyper, loss);
  // The recipe: every update is separable, so each matrix is shared as soon
  // as it is updated.
  {
    PhaseScope time(timer_, Phase::AdamW);
    adam.step(multiplier);
  }
  std::vector<Gather> gathers;
  for (const auto& slot : slots_) {
    auto grad = gradient(slot);
    if (grad.defined()) {
      PhaseScope time(timer_, Phase::NewtonSchulz);
      muon->update(static_cast<size_t>(slot.matrix), grad, hyper);
    }
    start_sharing(slot, gathers);
  }
  finish_sharing(gathers);
}

void Optimizer::discard_step() {
  if (!reducer_) return;
  for (size_t u : bucket_units_) reducer_->wait_bucket(u);
  for (size_t u : shard_units_) reducer_->wait_shard(u);
}

torch::Tensor Optimizer::gradient(const MatrixSlot& slot) {
  if (ownership_) {
    PhaseScope wait(timer_, Phase::CommWait);
    return reducer_->wait_shard(shard_units_[slot.shard]);
  }
  return matrices_[slot.matrix].tensor.grad();
}

void Optimizer::start_sharing(const MatrixSlot& slot, std::vector<Gather>& gathers) {
  if (!ownership_) return;
  const auto& slots = ownership_->shards[slot.shard].slots;
  const auto& like = matrices_[*std::find_if(slots.begin(), slots.end(), [](int m) { return m >= 0; })].tensor;
  auto local = slot.matrix >= 0 ? matrices_[slot.matrix].tensor.reshape({-1}) : torch::zeros({like.numel()}, like.options());
  auto output = torch::empty({comm_->size(), like.numel()}, like.options());
  gathers.push_back({slot.shard, output, comm_->all_gather(local.contiguous(), output)});
}

void Optimizer::finish_sharing(std::vector<Gather>& gathers) {
  for (auto& g : gathers) {
    {
      PhaseScope wait(timer_, Phase::CommWait);
      g.work->wait();
    }
    const auto& slots = ownership_->shards[g.shard].slots;
    for (int r = 0; r < comm_->size(); ++r)
      if (slots[r] >= 0 && r != comm_->rank())
        matrices_[slots[r]].tensor.copy_(g.output[r].view(matrices_[slots[r]].tensor.sizes()));
  }
}

std::vector<double> Optimizer::sum_over_owners(const std::vector<double>& partial) {
  if (!ownership_) return partial;
  auto sums = torch::tensor(partial, torch::kDouble).to(comm_->device());
  comm_->all_reduce_mean(sums)->wait();
  sums = sums.to(torch::kCPU) * comm_->size();
  return {sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel()};
}

double Optimizer::momo_model_loss(int64_t step, const MuonStep& hyper, const std::vector<torch::Tensor>& grads,
                                   std::optional<double> loss) {
  if (!loss) throw std::invalid_argument("optim.momo needs the step's loss: Optimizer::step(step, loss)");
  double grad_dot = 0, momentum_dot = 0;  // over this rank's matrices
  for (size_t k = 0; k < slots_.size(); ++k) {
    if (!grads[k].defined()) continue;
    const auto m = static_cast<size_t>(slots_[k].matrix);
    muon->advance_momentum(m, grads[k], hyper);
    grad_dot += (grads[k].to(torch::kDouble) * matrices_[m].tensor.to(torch::kDouble)).sum().item<double>();
    momentum_dot += muon->momentum_dot_weights(m);
  }
  const auto sums = sum_over_owners({grad_dot, momentum_dot});
  const auto [adam_grad_dot, adam_momentum_dot] = adam.momo_inner_products();
  return momo_->model_loss(*loss, sums[0] + adam_grad_dot,
                           sums[1] / muon_momentum_mass(step, optim_.muon) + adam_momentum_dot);
}

// The general step (optim/steepest_descent.h, optim/momo.h): the scales of
// the blocks may need Momo's model of the loss and the dual norms of all
// matrices. Those computed on several ranks are summed in the same order on
// every rank: Momo's inner products, then the dual norms.
void Optimizer::variant_step(int64_t step, double multiplier, const MuonStep& hyper, std::optional<double> loss) {
  std::vector<torch::Tensor> grads;
  for (const auto& slot : slots_) grads.push_back(gradient(slot));
  {
    PhaseScope time(timer_, Phase::AdamW);
    adam.advance();
  }
  std::vector<double> lr_ratios;
  for (const auto& group : adam.groups()) lr_ratios.push_back(group.lr / optim_.muon.lr);
  BlockDualNorms norms;
  norms.groups = adam.dual_norms(variant_.backup);
  // Momo's model of the loss at the current weights, before anything moves
  // (it advances the matrices' momenta).
  const double model_loss = momo_ ? momo_model_loss(step, hyper, grads, loss) : 0.0;
  // With the matrices' sums known beforehand (not needed, or stale), each
  // matrix is updated and shared as soon as its LMO is known; otherwise the
  // LMOs are kept until the sums of this step are in.
  const bool needs_matrix_sums = momo_ || !matrices_separable(variant_);
  const bool wait_for_sums = needs_matrix_sums && !(variant_.stale && stale_norms_);
  auto scales_for = [&](const BlockDualNorms& n) {
    const double N = total_dual_norm(variant_, n, lr_ratios);
    const double fraction = momo_ ? momo_step_fraction(model_loss, momo_->f_star(), hyper.lr, N, variant_.mode) : 1.0;
    spdlog::debug("step {}: dual norms: groups {:.4g}, matrices sum {:.4g}{}; total {:.4g}; momo model loss {:.4g}, "
                  "step fraction {:.4g}",
                  step, fmt::join(n.groups, " "), n.matrix_sum, needs_matrix_sums ? "" : " (not needed)", N,
                  model_loss, fraction);
    return step_scales(variant_, n, lr_ratios, fraction);
  };

  StepScales scales;
  if (!wait_for_sums) {
    if (stale_norms_) std::tie(norms.matrix_sum, norms.matrix_sum_sq) = *stale_norms_;
    scales = scales_for(norms);
    PhaseScope time(timer_, Phase::AdamW);
    adam.apply(multiplier, variant_.backup, scales.groups, norms.groups);
  }
  struct Pending {
    size_t slot;
    torch::Tensor polar;
    double dual_norm;
  };
  std::vector<Pending> pending;
  std::vector<Gather> gathers;
  double sum = 0, sum_sq = 0;  // over this rank's matrices
  for (size_t k = 0; k < slots_.size(); ++k) {
    if (grads[k].defined()) {
      PhaseScope time(timer_, Phase::NewtonSchulz);
      const auto m = static_cast<size_t>(slots_[k].matrix);
      if (!momo_) muon->advance_momentum(m, grads[k], hyper);
      const auto direction = muon->direction(m, grads[k], hyper);
      const double n = muon_dual_norm(direction, hyper);
      sum += n;
      sum_sq += n * n;
      if (wait_for_sums) pending.push_back({k, direction.polar, n});
      else muon->apply(m, direction.polar, hyper, scales.matrix(n));
    }
    if (!wait_for_sums) start_sharing(slots_[k], gathers);
  }
  const auto sums = needs_matrix_sums ? sum_over_owners({sum, sum_sq}) : std::vector<double>{sum, sum_sq};
  if (variant_.stale && needs_matrix_sums) stale_norms_ = {sums[0], sums[1]};
  if (wait_for_sums) {
    norms.matrix_sum = sums[0];
    norms.matrix_sum_sq = sums[1];
    scales = scales_for(norms);
    adam.apply(multiplier, variant_.backup, scales.groups, norms.groups);
    auto next = pending.begin();
    for (size_t k = 0; k < slots_.size(); ++k) {
      if (next != pending.end() && next->slot == k) {
        muon->apply(static_cast<size_t>(slots_[k].matrix), next->polar, hyper, scales.matrix(next->dual_norm));
        ++next;
      }
      start_sharing(slots_[k], gathers);
    }
  }
  finish_sharing(gathers);
}

std::string Optimizer::describe() const {
  if (!muon) return "adamw";
  const auto& s = optim_.steepest;
  std::string out = "muon (polar " + optim_.muon.polar + ", shape " + optim_.muon.shape_factor + ") + adamw";
  if (is_plain(variant_) && !momo_) return out;
  out += "; steepest descent " + s.mode + ", outer norm " + s.outer_norm + ", backup norm " + s.backup_norm;
  if (s.stale_dual_norms) out += ", stale dual norms";
  if (momo_) out += fmt::format(", momo (f* = {}, beta = {})", optim_.momo.f_star, optim_.momo.beta);
  return out;
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.mutable_grad().reset();
}

std::vector<std::pair<std::string, torch::Tensor>> Optimizer::state() const {
  auto out = adam.state();
  if (muon)
    for (auto& entry : muon->state()) out.push_back(std::move(entry));
  if (momo_)
    for (auto& entry : momo_->state()) out.push_back(std::move(entry));
  // Global sums (the same on every rank): [S, Q, whether there are any].
  if (variant_.stale)
    out.emplace_back("steepest.stale_norms",
                     stale_norms_ ? torch::tensor({stale_norms_->first, stale_norms_->second, 1.0}, torch::kDouble)
                                  : torch::zeros({3}, torch::kDouble));
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  adam.load_state(tensors);
  if (muon) muon->load_state(tensors);
  if (momo_) momo_->load_state(tensors);
  if (variant_.stale) {
    const auto t = state_tensor(tensors, "steepest.stale_norms", torch::zeros({3})).to(torch::kDouble);
    stale_norms_.reset();
    if (t[2].item<double>() != 0) stale_norms_ = {t[0].item<double>(), t[1].item<double>()};
  }
}

}  // namespace muonrun
