// The steepest-descent family and Momo as a step rule (optim/step_rule.h):
// every optim.steepest / optim.preset variant but the recipe's, with or
// without optim.momo. The math is in optim/steepest_descent.h and
// optim/momo.h; this file drives it over the matrices and AdamW's groups,
// on one process or on the ranks that own the matrices.
//
// Muon and AdamW as one steepest descent under a norm per block: Bernstein
// & Newhouse 2024, "Old Optimizer, New Norm: An Anthology"
// (arXiv:2409.20325); Pethick et al. 2025, "Training Deep Learning Models
// with Norm-Constrained LMOs" (Scion, arXiv:2502.07529). Momo: Schaipp et
// al. 2024, "MoMo: Momentum Models for Adaptive Learning Rates"
// (arXiv:2305.07583).
//
// A block's scale may need Momo's model of the loss and the dual norms of
// all matrices. Sums computed on several ranks are added in the same order
// on every rank: Momo's inner products, then the dual norms.
#include <spdlog/spdlog.h>

#include <tuple>

#include "optim/momo.h"
#include "optim/schedule.h"
#include "optim/steepest_descent.h"
#include "optim/step_rule.h"
#include "trainer/base/config_error.h"
#include "trainer/base/phase_timer.h"

namespace muonrun {
namespace {

bool applies(const OptimConfig& optim) {
  return !is_plain(steepest_variant(optim.steepest)) || optim.momo.enabled;
}

// Rejects combinations that have no meaning (the schema checks each key alone).
void check_variant(const OptimConfig& optim) {
  if (optim.matrix_optimizer != MatrixOptimizer::muon)
    throw ConfigError("optim.steepest and optim.momo combine Muon with AdamW: they need optim.matrix_optimizer = muon");
  if (!(optim.muon.lr > 0))
    throw ConfigError("optim.steepest and optim.momo weigh each group by its lr relative to optim.muon.lr, which must be > 0");
  if (optim.adam.nested)
    throw ConfigError("optim.adam.nested: the nested EMA is no LMO of a norm at the momentum; "
                      "it needs the default optim.steepest and no optim.momo");
}

class SteepestStep final : public StepRule {
 public:
  explicit SteepestStep(const OptimConfig& optim) : optim_(optim), variant_(steepest_variant(optim.steepest)) {
    check_variant(optim_);
    if (optim_.momo.enabled) momo_ = std::make_unique<Momo>(optim_.momo);
    stale_.enabled = variant_.stale;
  }

  void step(StepContext& ctx) override;
  bool uses_loss() const override { return momo_ != nullptr; }
  std::string describe() const override;
  void state(std::vector<std::pair<std::string, torch::Tensor>>& out) const override {
    if (momo_)
      for (auto& entry : momo_->state()) out.push_back(std::move(entry));
    stale_.state(out);
  }
  void load_state(const std::map<std::string, torch::Tensor>& tensors) override {
    if (momo_) momo_->load_state(tensors);
    stale_.load_state(tensors);
  }

 private:
  // Momo's model f~ of the loss at the current weights; advances the
  // momentum of this rank's matrices from `grads` (one per slot).
  double momo_model_loss(StepContext& ctx, const MuonStep& hyper, const std::vector<torch::Tensor>& grads);

  OptimConfig optim_;
  SteepestVariant variant_;
  std::unique_ptr<Momo> momo_;  // null unless optim.momo.enabled
  StaleDualNorms stale_;        // (S, Q) of the previous step, once there is one
};

double SteepestStep::momo_model_loss(StepContext& ctx, const MuonStep& hyper, const std::vector<torch::Tensor>& grads) {
  if (!ctx.loss) throw std::invalid_argument("optim.momo needs the step's loss: Optimizer::step(step, loss)");
  Muon& muon = *ctx.muon;
  const auto& slots = ctx.slots();
  double grad_dot = 0, momentum_dot = 0;  // over this rank's matrices
  for (size_t k = 0; k < slots.size(); ++k) {
    if (!grads[k].defined()) continue;
    const auto m = static_cast<size_t>(slots[k].matrix);
    muon.advance_momentum(m, grads[k], hyper);
    grad_dot += (grads[k].to(torch::kDouble) * ctx.weights(slots[k].matrix).to(torch::kDouble)).sum().item<double>();
    momentum_dot += muon.momentum_dot_weights(m);
  }
  const auto sums = ctx.sum_over_owners({grad_dot, momentum_dot});
  const auto [adam_grad_dot, adam_momentum_dot] = ctx.adam.momo_inner_products();
  return momo_->model_loss(*ctx.loss, sums[0] + adam_grad_dot,
                           sums[1] / muon_momentum_mass(ctx.step, optim_.muon, muon.total_steps()) + adam_momentum_dot);
}

void SteepestStep::step(StepContext& ctx) {
  Muon& muon = *ctx.muon;
  AdamW& adam = ctx.adam;
  const auto& slots = ctx.slots();
  const double multiplier = ctx.lr_multiplier;
  const MuonStep hyper = muon.step_hyper(multiplier, ctx.step);
  auto& stale_norms = stale_.value;

  std::vector<torch::Tensor> grads;
  for (const auto& slot : slots) grads.push_back(ctx.gradient(slot));
  {
    PhaseScope time(ctx.timer, Phase::AdamW);
    adam.advance();
  }
  std::vector<double> lr_ratios;
  for (const auto& group : adam.groups()) lr_ratios.push_back(group.lr / optim_.muon.lr);
  BlockDualNorms norms;
  norms.groups = adam.dual_norms(variant_.backup);
  // Momo's model of the loss at the current weights, before anything moves
  // (it advances the matrices' momenta).
  const double model_loss = momo_ ? momo_model_loss(ctx, hyper, grads) : 0.0;
  // With the matrices' sums known beforehand (not needed, or stale), each
  // matrix is updated and shared as soon as its LMO is known; otherwise the
  // LMOs are kept until the sums of this step are in.
  const bool needs_matrix_sums = momo_ || !matrices_separable(variant_);
  const bool wait_for_sums = needs_matrix_sums && !(variant_.stale && stale_norms);
  auto scales_for = [&](const BlockDualNorms& n) {
    const double N = total_dual_norm(variant_, n, lr_ratios);
    const double fraction = momo_ ? momo_step_fraction(model_loss, momo_->f_star(), hyper.lr, N, variant_.mode) : 1.0;
    spdlog::debug("step {}: dual norms: groups {:.4g}, matrices sum {:.4g}{}; total {:.4g}; momo model loss {:.4g}, "
                  "step fraction {:.4g}",
                  ctx.step, fmt::join(n.groups, " "), n.matrix_sum, needs_matrix_sums ? "" : " (not needed)", N,
                  model_loss, fraction);
    return step_scales(variant_, n, lr_ratios, fraction);
  };

  StepScales scales;
  if (!wait_for_sums) {
    if (stale_norms) std::tie(norms.matrix_sum, norms.matrix_sum_sq) = *stale_norms;
    scales = scales_for(norms);
    PhaseScope time(ctx.timer, Phase::AdamW);
    adam.apply(multiplier, variant_.backup, scales.groups, norms.groups);
  }
  struct Pending {
    size_t slot;
    torch::Tensor polar;
    double dual_norm;
  };
  std::vector<Pending> pending;
  double sum = 0, sum_sq = 0;  // over this rank's matrices
  for (size_t k = 0; k < slots.size(); ++k) {
    if (grads[k].defined()) {
      PhaseScope time(ctx.timer, Phase::NewtonSchulz);
      const auto m = static_cast<size_t>(slots[k].matrix);
      if (!momo_) muon.advance_momentum(m, grads[k], hyper);
      const auto direction = muon.direction(m, grads[k], hyper);
      const double n = muon_dual_norm(direction, hyper);
      sum += n;
      sum_sq += n * n;
      if (wait_for_sums) pending.push_back({k, direction.polar, n});
      else muon.apply(m, direction.polar, hyper, scales.matrix(n));
    }
    if (!wait_for_sums) ctx.share(slots[k]);
  }
  const auto sums = needs_matrix_sums ? ctx.sum_over_owners({sum, sum_sq}) : std::vector<double>{sum, sum_sq};
  if (variant_.stale && needs_matrix_sums) stale_norms = {sums[0], sums[1]};
  if (wait_for_sums) {
    norms.matrix_sum = sums[0];
    norms.matrix_sum_sq = sums[1];
    scales = scales_for(norms);
    adam.apply(multiplier, variant_.backup, scales.groups, norms.groups);
    auto next = pending.begin();
    for (size_t k = 0; k < slots.size(); ++k) {
      if (next != pending.end() && next->slot == k) {
        muon.apply(static_cast<size_t>(slots[k].matrix), next->polar, hyper, scales.matrix(next->dual_norm));
        ++next;
      }
      ctx.share(slots[k]);
    }
  }
  ctx.finish_sharing();
}

std::string SteepestStep::describe() const {
  const auto& s = optim_.steepest;
  std::string out = std::string("; steepest descent ") + name_of(s.mode) + ", outer norm " + name_of(s.outer_norm) + ", backup norm " + name_of(s.backup_norm);
  if (s.stale_dual_norms) out += ", stale dual norms";
  if (momo_) out += fmt::format(", momo (f* = {}, beta = {})", optim_.momo.f_star, optim_.momo.beta);
  return out;
}

}  // namespace

StepRuleEntry steepest_step_rule() {
  return {"steepest", applies, [](const OptimConfig& optim) -> std::unique_ptr<StepRule> {
            // The variants scale Muon's polar factor by dual norms of their own;
            // NorMuon and the cautious decay belong to the recipe's batched step.
            if (optim.muon.normuon || optim.muon.cautious_weight_decay || !optim.muon.lr_mul.empty() ||
                optim.adam.cautious_weight_decay || optim.adam.step_every != 1)
              throw ConfigError("optim.muon.normuon, optim.muon.cautious_weight_decay, optim.muon.lr_mul, "
                                "optim.adam.cautious_weight_decay and optim.adam.step_every work with the recipe's "
                                "step, not with optim.steepest / optim.preset / optim.momo variants");
            return std::make_unique<SteepestStep>(optim);
          }};
}

}  // namespace muonrun
