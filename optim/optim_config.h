// The optimizers' config: AdamW, Muon, the steepest-descent variants, Momo and the lr schedule.
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/base/choice.h"

namespace muonrun {

// The choices of optim.* (see trainer/base/choice.h): each enum with its
// table of names as config files spell them, in enum order.
enum class MatrixOptimizer { muon, adamw };
inline constexpr Choice<MatrixOptimizer> kMatrixOptimizerChoices[] = {
    {"muon", MatrixOptimizer::muon}, {"adamw", MatrixOptimizer::adamw}};
constexpr const auto& choices(MatrixOptimizer) { return kMatrixOptimizerChoices; }
static_assert(choices_in_enum_order(kMatrixOptimizerChoices));

enum class Preset { none, muon_adam, scion, muonmax, polargrad };
inline constexpr Choice<Preset> kPresetChoices[] = {{"none", Preset::none},
                                                    {"muon_adam", Preset::muon_adam},
                                                    {"scion", Preset::scion},
                                                    {"muonmax", Preset::muonmax},
                                                    {"polargrad", Preset::polargrad}};
constexpr const auto& choices(Preset) { return kPresetChoices; }
static_assert(choices_in_enum_order(kPresetChoices));

enum class Distribute { owner, replicated };
inline constexpr Choice<Distribute> kDistributeChoices[] = {
    {"owner", Distribute::owner}, {"replicated", Distribute::replicated}};
constexpr const auto& choices(Distribute) { return kDistributeChoices; }
static_assert(choices_in_enum_order(kDistributeChoices));

enum class Polar { quintic, polar_express, svd };
inline constexpr Choice<Polar> kPolarChoices[] = {
    {"quintic", Polar::quintic}, {"polar_express", Polar::polar_express}, {"svd", Polar::svd}};
constexpr const auto& choices(Polar) { return kPolarChoices; }
static_assert(choices_in_enum_order(kPolarChoices));

enum class ShapeFactor { original, match_rms_adamw, spectral };
inline constexpr Choice<ShapeFactor> kShapeFactorChoices[] = {{"original", ShapeFactor::original},
                                                              {"match_rms_adamw", ShapeFactor::match_rms_adamw},
                                                              {"spectral", ShapeFactor::spectral}};
constexpr const auto& choices(ShapeFactor) { return kShapeFactorChoices; }
static_assert(choices_in_enum_order(kShapeFactorChoices));

enum class SteepestMode { constrained, regularized };
inline constexpr Choice<SteepestMode> kSteepestModeChoices[] = {
    {"constrained", SteepestMode::constrained}, {"regularized", SteepestMode::regularized}};
constexpr const auto& choices(SteepestMode) { return kSteepestModeChoices; }
static_assert(choices_in_enum_order(kSteepestModeChoices));

enum class OuterNorm { max, l2, hybrid };
inline constexpr Choice<OuterNorm> kOuterNormChoices[] = {
    {"max", OuterNorm::max}, {"l2", OuterNorm::l2}, {"hybrid", OuterNorm::hybrid}};
constexpr const auto& choices(OuterNorm) { return kOuterNormChoices; }
static_assert(choices_in_enum_order(kOuterNormChoices));

enum class BackupNorm { ada_inf, sign, ada_2 };
inline constexpr Choice<BackupNorm> kBackupNormChoices[] = {
    {"ada_inf", BackupNorm::ada_inf}, {"sign", BackupNorm::sign}, {"ada_2", BackupNorm::ada_2}};
constexpr const auto& choices(BackupNorm) { return kBackupNormChoices; }
static_assert(choices_in_enum_order(kBackupNormChoices));

struct ScheduleConfig {
  int64_t warmup_steps = 0;
  double cooldown_frac = 0.3;   // linear decay over this final fraction of the scheduled steps
  double cooldown_floor = 0.0;  // the decay's end (record 29: 0.1)
  // The last steps of train.steps, after the scheduled ones, run at
  // cooldown_floor and the model's extension windows (record 50: 40 of 2090).
  int64_t extension_steps = 0;
  // The lr's peak in each equal part of the scheduled steps, from which the
  // cooldown also starts (record 50: "1 1.51 1.93", (bs/8)^0.6 of its batch
  // schedule); optim/schedule.h parses it once.
  std::string stage_lr = "1";
};

struct AdamConfig {
  double embed_lr = 0.6;
  double head_lr = 0.008;
  double scalar_lr = 0.04;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0;
  double matrix_lr = 0.008;  // hidden matrices, when optim.matrix_optimizer = adamw
  // Ablation knobs: bias correction, zero init of the moments, nested EMA.
  bool bias_correction = true;  // divide m by 1-b1^t and v by 1-b2^t
  bool zero_init = true;        // m0 = v0 = 0; false: m0 = g1, v0 = g1^2
  bool nested = false;          // step EMA_b1(g / (sqrt(v) + eps)) instead of m / (sqrt(v) + eps)
  // Record 29's DistAdam: eps joins sqrt(v) before the bias correction,
  // lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps), where torch.optim.AdamW
  // (and the default) take lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps). Off
  // the fused kernel: the step counts are read on the host.
  bool eps_before_bias_correction = false;
  // Epsilon of each group; 0: `eps`.
  double embed_eps = 0;
  double head_eps = 0;
  double scalar_eps = 0;
  double matrix_eps = 0;
  // Weight decay multiplier of each group (record 50: 0 for the scalars).
  double embed_wd_mul = 1;
  double head_wd_mul = 1;
  double scalar_wd_mul = 1;
  double matrix_wd_mul = 1;
  // Cautious weight decay (Chen et al. 2025, arXiv:2510.12402; record 50's
  // DistAdam): W -= W [u W >= 0] lr wd wd_mul lr, u the step's Adam update,
  // so the decay follows the lr schedule twice; off the fused kernel.
  bool cautious_weight_decay = false;
  // Adam updates every step_every-th step with the sum of the gradients since
  // its last update (record 39 on: 2, on the odd steps); Muon every step.
  int64_t step_every = 1;
};

struct MuonConfig {
  double lr = 0.04;
  double momentum = 0.95;
  double momentum_warmup_start = 0.85;
  int64_t momentum_warmup_steps = 500;
  // Over the last momentum_cooldown_steps of train.steps the momentum falls
  // linearly to momentum_cooldown_end (the speedrun's record 39 on: 0.95 ->
  // 0.85 over the last 50 steps, reaching 0.852 at the last update); 0: none.
  int64_t momentum_cooldown_steps = 0;
  double momentum_cooldown_end = 0.85;
  bool nesterov = true;
  int64_t ns_steps = 5;
  double weight_decay = 0;
  // With several ranks: "owner" gives each matrix to one rank (reduce-scatter
  // of gradients, Newton-Schulz on the owner, all-gather of weights);
  // "replicated" all-reduces gradients and every rank updates every matrix.
  Distribute distribute = Distribute::owner;
  // Polar factor: Newton-Schulz with the fixed "quintic" or the per-step
  // "polar_express" coefficients (Amsel et al. 2025, arXiv:2505.16932; see
  // optim/newton_schulz.h), or the exact "svd" (ablations).
  Polar polar = Polar::quintic;
  // Update scale per shape: "original" sqrt(max(1, rows/cols)),
  // "match_rms_adamw" 0.2 sqrt(max(rows, cols)), "spectral" sqrt(rows/cols).
  ShapeFactor shape_factor = ShapeFactor::original;
  // NorMuon (the speedrun's records 41-48; KellerJordan/modded-nanogpt
  // records/track_1_short/2025-12-18_CautiousWDAdam, class NorMuon): each
  // row (or column) of the orthogonalised update divided by the root of an
  // EMA (normuon_beta2) of its mean square, the matrix's norm kept (optim/muon.h).
  bool normuon = false;
  double normuon_beta2 = 0.95;
  // Cautious weight decay (Chen et al. 2025, arXiv:2510.12402; records 43
  // and 50): decay only where the update and the weight agree in sign, with
  // the record's strength weight_decay x lr x (lr x shape factor), so that it
  // follows the lr schedule twice (optim/muon.h).
  bool cautious_weight_decay = false;
  // Per-matrix lr multipliers: "suffix=factor ..." for the matrices whose names
  // end with suffix (record 50: "attn.qkvo_w=2 mlp.c_proj=2", its c_proj's
  // lr_mul 2 and the factor 2 its [4 dim, dim] qkvo_w gets from its stored
  // shape where ours is a stack [4, dim, dim]); parsed once by Muon.
  std::string lr_mul;
};

// Muon and AdamW as one steepest descent over all parameters (M. Crawshaw,
// with C. Modi, M. Liu, R. M. Gower, talk "An Exploration of Non-Euclidean
// Gradient Descent: Muon and its Many Variants", 2026; see
// optim/steepest_descent.h); the defaults are the speedrun's Muon + Adam.
struct SteepestConfig {
  SteepestMode mode = SteepestMode::constrained;  // or regularized: step scaled by the dual norm
  OuterNorm outer_norm = OuterNorm::max;          // how layer norms combine: max, l2 or hybrid
  BackupNorm backup_norm = BackupNorm::ada_inf;   // norm of non-matrix parameters: ada_inf (Adam), sign, ada_2
  bool stale_dual_norms = false;                  // use the previous step's nuclear norms (one pass)
};

// Momo step sizes (Schaipp, Ohana, Eickenberg, Defazio, Gower, "MoMo: Momentum
// Models for Adaptive Learning Rates", ICML 2024, arXiv:2305.07583; applied to
// Muon in Crawshaw's talk, see optim/momo.h): never step past
// the loss lower bound f_star predicted by the momentum model.
struct MomoConfig {
  bool enabled = false;
  double f_star = 0;  // lower bound of the training loss
  double beta = 0.9;  // EMA of f - <g, w>
};

struct OptimConfig {
  MatrixOptimizer matrix_optimizer = MatrixOptimizer::muon;  // or adamw: AdamW for everything
  Preset preset = Preset::none;  // muon_adam, scion, muonmax, polargrad: see optim/presets.h
  AdamConfig adam;
  MuonConfig muon;
  SteepestConfig steepest;
  MomoConfig momo;
};

}  // namespace muonrun
