// The speedrun recipe's step, and AdamW alone (optim/step_rule.h).
//
// Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural
// networks", kellerjordan.github.io/posts/muon) for the hidden matrices and
// AdamW (Loshchilov & Hutter 2019) for the embedding, head and scalars, as in
// the KellerJordan/modded-nanogpt records since Muon was introduced. Every
// update is separable: the matrices of one size class are updated in one
// batched Newton-Schulz (the 124M model has two classes, 48 of 768 x 768
// and 24 of 768 x 3072 after transposition), and in owner mode each class
// is all-gathered as soon as its owners have updated it, overlapping the
// next class's Newton-Schulz (the records' distributed Muon).
//
// Both rules honour a device-side skip (StepContext::skip): AdamW through
// its fused kernel's found_inf, Muon through muon_update_batch's mask.
#include "optim/step_rule.h"
#include "trainer/base/phase_timer.h"

namespace muonrun {
namespace {

class RecipeStep final : public StepRule {
 public:
  explicit RecipeStep(const OptimConfig& optim) { stale_.enabled = optim.steepest.stale_dual_norms; }

  void step(StepContext& ctx) override {
    const MuonStep hyper = ctx.muon->step_hyper(ctx.lr_multiplier, ctx.step);
    if (ctx.adam_due()) {
      PhaseScope time(ctx.timer, Phase::AdamW);
      ctx.adam.step(ctx.lr_multiplier, ctx.skip);
    }
    for (const auto& batch : ctx.slots_by_size_class()) {
      std::vector<size_t> matrices;
      std::vector<torch::Tensor> grads;
      for (const auto& slot : batch) {
        auto grad = ctx.gradient(slot);
        if (!grad.defined()) continue;
        matrices.push_back(static_cast<size_t>(slot.matrix));
        grads.push_back(grad);
      }
      if (!matrices.empty()) {
        PhaseScope time(ctx.timer, Phase::NewtonSchulz);
        ctx.muon->update(matrices, grads, hyper, ctx.skip);
      }
      for (const auto& slot : batch) ctx.share(slot);
    }
    ctx.finish_sharing();
  }
  bool skips_on_device(const AdamW& adam) const override { return adam.fused(); }

  // The recipe never uses stale dual norms, but a config that asks for them
  // keeps their (empty) checkpoint tensor, like the steepest rule's.
  void state(std::vector<std::pair<std::string, torch::Tensor>>& out) const override { stale_.state(out); }
  void load_state(const std::map<std::string, torch::Tensor>& tensors) override { stale_.load_state(tensors); }

 private:
  StaleDualNorms stale_;
};

class AdamWOnlyStep final : public StepRule {
 public:
  explicit AdamWOnlyStep(const OptimConfig& optim) { stale_.enabled = optim.steepest.stale_dual_norms; }

  void step(StepContext& ctx) override {
    PhaseScope time(ctx.timer, Phase::AdamW);
    if (ctx.adam_due()) ctx.adam.step(ctx.lr_multiplier, ctx.skip);
  }
  bool skips_on_device(const AdamW& adam) const override { return adam.fused(); }
  void state(std::vector<std::pair<std::string, torch::Tensor>>& out) const override { stale_.state(out); }
  void load_state(const std::map<std::string, torch::Tensor>& tensors) override { stale_.load_state(tensors); }

 private:
  StaleDualNorms stale_;
};

}  // namespace

StepRuleEntry recipe_step_rule() {
  return {"recipe", [](const OptimConfig&) { return true; },
          [](const OptimConfig& optim) -> std::unique_ptr<StepRule> { return std::make_unique<RecipeStep>(optim); }};
}

StepRuleEntry adamw_only_step_rule() {
  return {"adamw_only", [](const OptimConfig& optim) { return optim.matrix_optimizer != MatrixOptimizer::muon; },
          [](const OptimConfig& optim) -> std::unique_ptr<StepRule> { return std::make_unique<AdamWOnlyStep>(optim); }};
}

}  // namespace muonrun
