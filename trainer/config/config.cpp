#include "trainer/config/config.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <spdlog/fmt/fmt.h>

#include "trainer/base/json.h"
#include "trainer/config/yaml_keys.h"

namespace muonrun {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------
// The schema: every key, in the order `muonrun config` prints them. A visitor
// V provides section(), number(), flag(), text() and choice(); a choice is an
// enum field with its table of names (the *_config.h next to the enum), which
// every visitor reads through, so names are parsed and written in one place.
// ---------------------------------------------------------------------------
template <class V>
void visit_config(V& v, Config& c) {
  v.section("run", [&] {
    v.text("name", c.run.name, "run name; the run directory defaults to runs/<name>");
    v.text("dir", c.run.dir, "run directory (empty: runs/<name>)");
    v.choice("log_level", c.run.log_level, kLogLevelChoices,
             "log level of console and log files");
    v.choice("device", c.run.device, kRunDeviceChoices, "auto: cuda when available");
    v.number("cpu_threads", c.run.cpu_threads, int64_t{0}, int64_t{4096},
             "intra-op CPU threads per rank (0: cores / ranks on the node)");
    v.number("seed", c.run.seed, int64_t{0}, kMaxInt, "seed of parameter init and sampling");
  });
  v.section("model", [&] {
    v.choice("recipe", c.model.recipe, kRecipeChoices,
             "the network: record11 (models/gpt.h; rows of seq_len tokens), record29 (models/record29.h; "
             "one packed sequence of whole documents, seq_len tokens per rank per micro-step) or record50 "
             "(models/record50.h; packed documents too)");
    v.number("vocab_size", c.model.vocab_size, int64_t{1}, int64_t{65536},
             "tokens in the vocabulary (shards hold uint16)");
    v.number("vocab_multiple", c.model.vocab_multiple, int64_t{1}, int64_t{4096},
             "embedding and head rows padded to a multiple of this");
    v.number("layers", c.model.layers, int64_t{1}, int64_t{1024}, "transformer blocks");
    v.number("heads", c.model.heads, int64_t{1}, int64_t{1024}, "attention heads");
    v.number("head_dim", c.model.head_dim, int64_t{2}, int64_t{4096},
             "dimension per head (even, for rotary)");
    v.number("dim", c.model.dim, int64_t{1}, int64_t{65536}, "model (residual) dimension");
    v.number("mlp_ratio", c.model.mlp_ratio, int64_t{1}, int64_t{64},
             "MLP hidden = ratio x dim (record29: always 4)");
    v.number("seq_len", c.model.seq_len, int64_t{1}, int64_t{1} << 20,
             "tokens per sequence (record29: of the packed sequence per rank per micro-step)");
    v.number("rope_base", c.model.rope_base, 1.0, kInf,
             "rotary embedding base (record29: its own half-truncated rotary, base 1/1024)");
    v.number("logit_softcap", c.model.logit_softcap, 0.0, kInf,
             "logits = cap*tanh(logits/cap); 0 disables (record29: always 30 sigmoid(z/7.5))");
    v.choice("kernels", c.model.kernels, kKernelsChoices,
             "element-wise ops: fused (one op each: RMSNorm, QK-norm + rotary, relu^2, "
             "residual mixes with their norm, the head's soft-capped cross-entropy) or reference (the "
             "composite LibTorch ops); auto: fused");
    v.text("windows", c.model.windows,
           "record29/50: per layer, L (long window), S (short window) or - (no attention)");
    v.text("value_embeds", c.model.value_embeds,
           "record29/50: per layer, the value-embedding table (0, 1, 2) mixed into v, or - (none)");
    v.text("window_schedule", c.model.window_schedule,
           "record29/50: the long window in blocks over equal parts of training; short = half, rounded down");
    v.number("window_block", c.model.window_block, int64_t{1}, int64_t{1} << 20,
             "record29/50: tokens per window block");
    v.number("attn_scale", c.model.attn_scale, 1e-6, kInf, "record29/50: scale of q.k in attention (record50: before YaRN)");
    v.number("attn_gate_dim", c.model.attn_gate_dim, int64_t{1}, int64_t{65536},
             "record29/50: channels of the attention input its per-head sigmoid gate reads (record50: the "
             "smear gate's too)");
    v.flag("fp8_head", c.model.fp8_head,
           "record29/50: training's lm_head product in float8 (e4m3 inputs, e5m2 gradient, the record's "
           "static scales); evaluation and sampling use bf16");
    v.flag("smear", c.model.smear,
           "record50: each token's embedding plus a gated share of the previous token's (models/smear.h)");
    v.flag("key_offset", c.model.key_offset,
           "record50: on long-window layers the keys' non-rotating dims come from the previous token "
           "(models/key_offset.h)");
    v.flag("yarn", c.model.yarn,
           "record50: rescale rotary frequencies and attention scale when the long window grows (models/yarn.h)");
    v.text("skips", c.model.skips,
           "record50: gated skips \"from>to ...\": layer to's input adds sigmoid(its skip lambda, init -1.5) x "
           "layer from's output (record 50: \"3>6\"; record 32's U-net on 12 layers: \"5>6 4>7 3>8 2>9 1>10 "
           "0>11\"); empty: none");
    v.number("backout_layer", c.model.backout_layer, int64_t{-1}, int64_t{1023},
             "record50: the layer whose output, times backout_lambda, leaves the final hidden state (-1: none)");
    v.number("extension_window", c.model.extension_window, int64_t{0}, int64_t{1} << 20,
             "record50: long window (blocks) during schedule.extension_steps (0: the schedule's last)");
    v.number("final_window", c.model.final_window, int64_t{0}, int64_t{1} << 20,
             "record50: long window (blocks) of the final validation, YaRN left as trained (0: training's last)");
    v.text("mlps", c.model.mlps,
           "record50: per layer, M (an MLP) or - (none; record 30 dropped the first layer's); empty: every layer");
  });
  v.section("data", [&] {
    v.text("train", c.data.train, "training shards (glob pattern)");
    v.text("val", c.data.val, "validation shards (glob pattern)");
    v.number("max_doc_tokens", c.data.max_doc_tokens, int64_t{1}, kMaxInt,
             "document-aligned batches: each document is cut to this many tokens, its rest unused");
  });
  v.section("train", [&] {
    v.number("steps", c.train.steps, int64_t{1}, kMaxInt, "optimizer steps");
    v.number("batch_tokens", c.train.batch_tokens, int64_t{1}, kMaxInt,
             "global batch in tokens = world x micro_batch x seq_len x accumulation");
    v.text("batch_schedule", c.train.batch_schedule,
           "global batch in tokens of each equal part of the scheduled steps, e.g. \"131072 262144 393216\" "
           "(record 50; packed documents: the sequence per rank changes, the accumulation stays); "
           "empty: batch_tokens throughout");
    v.text("doc_cut_schedule", c.train.doc_cut_schedule,
           "with batch_schedule, each stage's cut of the packed documents in tokens, e.g. \"896 2048 2048\" (the "
           "record's max_seq_len sent with each batch size); empty: data.max_doc_tokens in every stage");
    v.number("micro_batch", c.train.micro_batch, int64_t{1}, int64_t{1} << 20,
             "sequences per rank per forward/backward");
    v.number("val_every", c.train.val_every, int64_t{0}, kMaxInt,
             "validate every N steps (0: only at the end)");
    v.number("val_tokens", c.train.val_tokens, int64_t{1}, kMaxInt, "tokens per validation");
    v.number("val_seq_len", c.train.val_seq_len, int64_t{0}, int64_t{1} << 20,
             "tokens per validation sequence (0: model.seq_len)");
    v.number("val_loss_target", c.train.val_loss_target, 0.0, kInf,
             "stop when val_loss <= target (0: run all steps)");
    v.number("timing_warmup_steps", c.train.timing_warmup_steps, int64_t{0}, kMaxInt,
             "first steps left out of train_time");
    v.number("log_every", c.train.log_every, int64_t{1}, kMaxInt, "log a train line every N steps");
    v.choice("on_divergence", c.train.on_divergence, kOnDivergenceChoices,
             "non-finite loss/gradient or loss spike: skip the update, roll back, or stop");
    v.number("spike_zscore", c.train.spike_zscore, 0.0, kInf,
             "loss z-score above which a step is a spike (0: off)");
    v.number("spike_window", c.train.spike_window, int64_t{2}, int64_t{1} << 20,
             "recent losses the spike z-score uses");
    v.number("rollback_lr_factor", c.train.rollback_lr_factor, 0.0, 1.0,
             "lr multiplier applied at each rollback");
    v.number("max_rollbacks", c.train.max_rollbacks, int64_t{0}, kMaxInt,
             "rollbacks allowed before the run stops");
    v.flag("cuda_graphs", c.train.cuda_graphs,
           "replay the micro-step as a CUDA graph (one process on a GPU; not yet verified on one)");
  });
  v.section("schedule", [&] {
    v.number("warmup_steps", c.schedule.warmup_steps, int64_t{0}, kMaxInt,
             "linear lr warm-up steps");
    v.number("cooldown_frac", c.schedule.cooldown_frac, 0.0, 1.0,
             "fraction of steps with linear decay to cooldown_floor");
    v.number("cooldown_floor", c.schedule.cooldown_floor, 0.0, 1.0,
             "lr multiplier the cooldown ends at (record 29: 0.1)");
    v.number("extension_steps", c.schedule.extension_steps, int64_t{0}, kMaxInt,
             "last steps of train.steps, after the scheduled ones: lr at cooldown_floor, the model's extension "
             "windows (record 50: 40)");
    v.text("stage_lr", c.schedule.stage_lr,
           "lr peak in each equal part of the scheduled steps, e.g. \"1 1.51 1.93\" (record 50)");
  });
  v.section("optim", [&] {
    v.choice("matrix_optimizer", c.optim.matrix_optimizer, kMatrixOptimizerChoices,
             "optimizer of the hidden matrices");
    v.choice("preset", c.optim.preset, kPresetChoices,
             "named variant: sets optim.steepest.* (and shape_factor for scion)");
    v.section("adam", [&] {
      v.number("embed_lr", c.optim.adam.embed_lr, 0.0, kInf, "token (and value) embeddings lr");
      v.number("head_lr", c.optim.adam.head_lr, 0.0, kInf, "lm_head lr");
      v.number("scalar_lr", c.optim.adam.scalar_lr, 0.0, kInf, "scalars and skip weights lr");
      v.number("beta1", c.optim.adam.beta1, 0.0, 1.0 - 1e-12, "first-moment decay");
      v.number("beta2", c.optim.adam.beta2, 0.0, 1.0 - 1e-12, "second-moment decay");
      v.number("eps", c.optim.adam.eps, 0.0, kInf, "added to sqrt(v)");
      v.number("weight_decay", c.optim.adam.weight_decay, 0.0, kInf, "decoupled weight decay");
      v.number("matrix_lr", c.optim.adam.matrix_lr, 0.0, kInf,
               "hidden matrices lr when matrix_optimizer = adamw");
      v.flag("bias_correction", c.optim.adam.bias_correction, "divide m by 1-beta1^t, v by 1-beta2^t");
      v.flag("zero_init", c.optim.adam.zero_init, "m, v start at 0 (false: at g1, g1^2)");
      v.flag("nested", c.optim.adam.nested, "step = EMA_beta1(g / (sqrt(v) + eps)) (nested EMA)");
      v.flag("eps_before_bias_correction", c.optim.adam.eps_before_bias_correction,
             "step = lr sqrt(1-beta2^t)/(1-beta1^t) m / (sqrt(v) + eps) (record 29's Adam)");
      v.number("embed_eps", c.optim.adam.embed_eps, 0.0, kInf, "eps of the embedding (0: eps)");
      v.number("head_eps", c.optim.adam.head_eps, 0.0, kInf, "eps of lm_head (0: eps)");
      v.number("scalar_eps", c.optim.adam.scalar_eps, 0.0, kInf, "eps of the scalars (0: eps)");
      v.number("matrix_eps", c.optim.adam.matrix_eps, 0.0, kInf,
               "eps of the hidden matrices under adamw (0: eps)");
      v.number("embed_wd_mul", c.optim.adam.embed_wd_mul, 0.0, kInf, "weight decay multiplier of the embeddings");
      v.number("head_wd_mul", c.optim.adam.head_wd_mul, 0.0, kInf, "weight decay multiplier of lm_head");
      v.number("scalar_wd_mul", c.optim.adam.scalar_wd_mul, 0.0, kInf,
               "weight decay multiplier of the scalars (record 50: 0)");
      v.number("matrix_wd_mul", c.optim.adam.matrix_wd_mul, 0.0, kInf,
               "weight decay multiplier of the hidden matrices under adamw");
      v.flag("cautious_weight_decay", c.optim.adam.cautious_weight_decay,
             "decay only where the update and the weight agree in sign, by lr wd wd_mul lr (record 50)");
      v.number("step_every", c.optim.adam.step_every, int64_t{1}, int64_t{1024},
               "Adam updates every N-th step with the gradients summed since its last (record 50: 2)");
    });
    v.section("muon", [&] {
      v.number("lr", c.optim.muon.lr, 0.0, kInf, "lr of the hidden matrices");
      v.number("momentum", c.optim.muon.momentum, 0.0, 1.0 - 1e-12, "EMA momentum");
      v.number("momentum_warmup_start", c.optim.muon.momentum_warmup_start, 0.0, 1.0 - 1e-12,
               "momentum at step 0, rising linearly to `momentum`");
      v.number("momentum_warmup_steps", c.optim.muon.momentum_warmup_steps, int64_t{0}, kMaxInt,
               "steps of momentum warm-up");
      v.number("momentum_cooldown_steps", c.optim.muon.momentum_cooldown_steps, int64_t{0}, kMaxInt,
               "last steps over which the momentum falls linearly to momentum_cooldown_end (0: none)");
      v.number("momentum_cooldown_end", c.optim.muon.momentum_cooldown_end, 0.0, 1.0 - 1e-12,
               "momentum at the end of the cool-down");
      v.flag("nesterov", c.optim.muon.nesterov, "Nesterov momentum");
      v.number("ns_steps", c.optim.muon.ns_steps, int64_t{1}, int64_t{100},
               "Newton-Schulz iterations");
      v.number("weight_decay", c.optim.muon.weight_decay, 0.0, kInf, "decoupled weight decay");
      v.choice("distribute", c.optim.muon.distribute, kDistributeChoices,
               "several ranks: one owner per matrix, or every rank computes all");
      v.choice("polar", c.optim.muon.polar, kPolarChoices,
               "polar factor: Newton-Schulz coefficients, or exact (SVD)");
      v.choice("shape_factor", c.optim.muon.shape_factor, kShapeFactorChoices,
               "update scale by matrix shape");
      v.flag("normuon", c.optim.muon.normuon,
             "NorMuon: rescale each row (or column) of the update by an EMA of its mean square, norm kept");
      v.number("normuon_beta2", c.optim.muon.normuon_beta2, 0.0, 1.0 - 1e-12, "NorMuon's second-moment decay");
      v.flag("cautious_weight_decay", c.optim.muon.cautious_weight_decay,
             "decay only where update x weight >= 0, by weight_decay x lr x (lr x shape factor x lr_mul)");
      v.text("lr_mul", c.optim.muon.lr_mul,
             "lr multipliers by name suffix, \"suffix=factor ...\" (record 50: \"attn.qkvo_w=2 mlp.c_proj=2\")");
    });
    v.section("steepest", [&] {
      v.choice("mode", c.optim.steepest.mode, kSteepestModeChoices,
               "step = lr x LMO, or lr x dual norm x LMO");
      v.choice("outer_norm", c.optim.steepest.outer_norm, kOuterNormChoices,
               "combination of the per-layer norms");
      v.choice("backup_norm", c.optim.steepest.backup_norm, kBackupNormChoices,
               "norm of the non-matrix parameters (ada_inf: Adam)");
      v.flag("stale_dual_norms", c.optim.steepest.stale_dual_norms,
             "use the previous step's nuclear norms (one pass over the matrices)");
    });
    v.section("momo", [&] {
      v.flag("enabled", c.optim.momo.enabled, "Momo step sizes: min(lr, (model - f_star) / dual norm)");
      v.number("f_star", c.optim.momo.f_star, -kInf, kInf, "lower bound of the training loss");
      v.number("beta", c.optim.momo.beta, 0.0, 1.0 - 1e-12, "EMA of loss - <grad, weights>");
    });
  });
  v.section("comm", [&] {
    v.number("bucket_mb", c.comm.bucket_mb, 0.001, kInf, "gradient all-reduce bucket size (MB)");
    v.number("timeout_s", c.comm.timeout_s, 1.0, kInf,
             "a collective waiting longer fails the run instead of hanging");
  });
  v.section("checkpoint", [&] {
    v.number("every", c.checkpoint.every, int64_t{0}, kMaxInt,
             "checkpoint every N steps (0: only at the end)");
    v.number("keep_last", c.checkpoint.keep_last, int64_t{1}, kMaxInt,
             "newest checkpoints kept (older ones are deleted)");
    v.number("keep_every", c.checkpoint.keep_every, int64_t{0}, kMaxInt,
             "also keep checkpoints whose step is a multiple of this (0: none)");
  });
  v.section("debug", [&] {
    v.number("inject_nan_step", c.debug.inject_nan_step, int64_t{-1}, kMaxInt,
             "testing aid: make rank 0's loss NaN once at this step (-1: never)");
  });
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------
std::string join_path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Shortest text that reads back as the same double (0.04, not 0.0400000001).
std::string format_double(double x) { return fmt::format("{}", x); }

template <class T>
std::string format_value(const T& x) {
  if constexpr (std::is_same_v<T, double>) return format_double(x);
  else if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>) return x;
  else return std::to_string(x);
}

// Whether to_yaml() can write `text` back. YAML holds only Unicode text, and
// yaml-cpp writes invalid UTF-8 and noncharacters (U+FFFF, ...) as U+FFFD, so
// a run's saved config.yaml would differ from the config it ran with.
bool survives_yaml(const std::string& text) {
  YAML::Emitter out;
  out << YAML::DoubleQuoted << text;
  return YAML::Load(out.c_str()).as<std::string>() == text;
}

// ---------------------------------------------------------------------------
// Applier: reads one YAML mapping onto the structs, checking every key.
// ---------------------------------------------------------------------------
class Applier {
 public:
  // `with_lines`: whether node positions are lines of a file (not of --set).
  Applier(const YAML::Node& root, std::string source, bool with_lines)
      : source_(std::move(source)), with_lines_(with_lines) {
    nodes_.push_back(root);
    if (root.IsMap()) check_duplicates(root, "");
  }

  void section(const char* key, const std::function<void()>& children) {
    YAML::Node node = lookup(key);
    if (!node) return;
    std::string path = join_path(path_, key);
    if (node.IsNull()) return;  // `optim:` with nothing under it
    if (!node.IsMap()) fail(node, path, "expected a mapping of keys");
    check_duplicates(node, path);
    enter(node, key);
    children();
    leave();
  }

  template <class T>
  void number(const char* key, T& value, T min, T max, const char* help) {
    YAML::Node node = lookup(key);
    if (!node) return;
    std::string path = join_path(path_, key);
    T parsed = scalar<T>(node, path, std::is_same_v<T, double> ? "a number" : "an integer");
    if (std::is_same_v<T, double> && !std::isfinite(static_cast<double>(parsed)))
      fail(node, path, "expected a finite number, got " + node.Scalar());
    if (parsed < min || parsed > max)
      fail(node, path, node.Scalar() + " is out of range [" + format_value(min) + ", " +
                           (max == std::numeric_limits<T>::max() || max == kInf
                                ? std::string("inf")
                                : format_value(max)) +
                           "]");
    value = parsed;
  }

  void flag(const char* key, bool& value, const char* help) {
    YAML::Node node = lookup(key);
    if (node) value = scalar<bool>(node, join_path(path_, key), "true or false");
  }

  void text(const char* key, std::string& value, const char* help) {
    YAML::Node node = lookup(key);
    if (!node) return;
    if (node.IsNull()) { value.clear(); return; }
    const std::string path = join_path(path_, key);
    value = scalar<std::string>(node, path, "a string");
    if (!survives_yaml(value))
      fail(node, path, "not valid UTF-8 text (YAML cannot hold it): " + json::quote(value));
  }

  template <class E, size_t N>
  void choice(const char* key, E& value, const Choice<E> (&choices)[N], const char* help) {
    YAML::Node node = lookup(key);
    if (!node) return;
    std::string path = join_path(path_, key);
    std::string parsed = scalar<std::string>(node, path, "a string");
    if (const Choice<E>* found = find_choice(choices, parsed)) { value = found->value; return; }
    fail(node, path, "'" + parsed + "' is not one of " + choice_list(choices));
  }

  // A top-level key outside the schema (`base`) that finish() accepts; the
  // caller handles its value.
  YAML::Node extra_key(const char* key) {
    extra_keys_.push_back(key);
    return find(nodes_.front(), key);
  }

  // Call after visiting the schema: rejects keys the schema does not know.
  void finish() {
    for (const auto& key : extra_keys_) known_[""].push_back(key);
    check_unknown(nodes_.front(), "");
  }

  [[noreturn]] void fail(const YAML::Node& node, const std::string& path,
                         const std::string& what) const {
    std::string where = source_;
    if (with_lines_ && !node.Mark().is_null()) where += ":" + std::to_string(node.Mark().line + 1);
    throw ConfigError(where + ": " + (path.empty() ? what : path + ": " + what));
  }

 private:
  // The value of `key` in `map` (the first, but check_duplicates() makes sure
  // there is only one).
  static YAML::Node find(const YAML::Node& map, const char* key) {
    if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    for (auto it = map.begin(); it != map.end(); ++it)
      if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
    return YAML::Node(YAML::NodeType::Undefined);
  }

  YAML::Node lookup(const char* key) {
    known_[path_].push_back(key);
    return find(nodes_.back(), key);
  }

  // A key given twice would silently keep its first value
  // (trainer/config/yaml_keys.h); a non-scalar key check_unknown() refuses.
  void check_duplicates(const YAML::Node& map, const std::string& path) const {
    const auto repeated = repeated_key(map);
    if (!repeated) return;
    std::string what = "key '" + join_path(path, repeated->key) + "' given twice";
    if (with_lines_ && !repeated->first.is_null())
      what += " (first at line " + std::to_string(repeated->first.line + 1) + ")";
    fail(repeated->again, "", what);
  }

  void enter(const YAML::Node& node, const char* key) {
    nodes_.push_back(node);
    path_ = join_path(path_, key);
  }
  void leave() {
    nodes_.pop_back();
    auto dot = path_.rfind('.');
    path_ = dot == std::string::npos ? "" : path_.substr(0, dot);
  }

  template <class T>
  T scalar(const YAML::Node& node, const std::string& path, const char* expected) {
    if (!node.IsScalar()) fail(node, path, std::string("expected ") + expected);
    try {
      return node.as<T>();
    } catch (const YAML::Exception&) {
      fail(node, path, std::string("expected ") + expected + ", got '" + node.Scalar() + "'");
    }
  }

  void check_unknown(const YAML::Node& node, const std::string& path) {
    if (!node.IsMap()) {
      if (path.empty() && !node.IsNull())
        fail(node, "", "expected a mapping of keys at the top level");
      return;
    }
    const auto& known = known_[path];
    for (auto it = node.begin(); it != node.end(); ++it) {
      std::string key = it->first.IsScalar() ? it->first.Scalar() : "?";
      std::string full = join_path(path, key);
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string best;
        size_t best_distance = 3;  // suggest only close matches
        for (const auto& candidate : known) {
          size_t d = edit_distance(key, candidate);
          if (d < best_distance) { best_distance = d; best = candidate; }
        }
        std::string message = "unknown key '" + full + "'";
        if (!best.empty()) message += " (did you mean '" + join_path(path, best) + "'?)";
        else message += "; valid keys here: " + list(known);
        fail(it->first, "", message);
      }
      if (known_.count(full)) check_unknown(it->second, full);
    }
  }

  static std::string list(const std::vector<std::string>& keys) {
    std::string out;
    for (const auto& k : keys) out += out.empty() ? k : ", " + k;
    return out;
  }

  std::string source_;
  bool with_lines_;
  std::vector<YAML::Node> nodes_;
  std::string path_;
  std::map<std::string, std::vector<std::string>> known_;  // section path -> its keys
  std::vector<std::string> extra_keys_;
};

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------
class YamlWriter {
 public:
  YamlWriter() { out_ << YAML::BeginMap; }

  void section(const char* key, const std::function<void()>& children) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    children();
    out_ << YAML::EndMap;
  }
  template <class T>
  void number(const char* key, T& value, T, T, const char* help) {
    emit(key, format_value(value), help);
  }
  void flag(const char* key, bool& value, const char* help) { emit(key, format_value(value), help); }
  void text(const char* key, std::string& value, const char* help) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value << YAML::Comment(help);
  }
  template <class E, size_t N>
  void choice(const char* key, E& value, const Choice<E> (&choices)[N], const char* help) {
    emit(key, name_of(value), std::string(help) + " (" + choice_list(choices) + ")");
  }

  std::string str() {
    out_ << YAML::EndMap;
    return std::string(out_.c_str()) + "\n";
  }

 private:
  void emit(const char* key, const std::string& value, const std::string& help) {
    out_ << YAML::Key << key << YAML::Value << value << YAML::Comment(help);
  }
  YAML::Emitter out_;
};

class Flattener {
 public:
  void section(const char* key, const std::function<void()>& children) {
    std::string saved = path_;
    path_ = join_path(path_, key);
    children();
    path_ = saved;
  }
  template <class T>
  void number(const char* key, T& value, T, T, const char*) { add(key, format_value(value)); }
  void flag(const char* key, bool& value, const char*) { add(key, format_value(value)); }
  void text(const char* key, std::string& value, const char*) { add(key, value); }
  template <class E, size_t N>
  void choice(const char* key, E& value, const Choice<E> (&)[N], const char*) {
    add(key, name_of(value));
  }
  std::vector<std::pair<std::string, std::string>> entries;

 private:
  void add(const char* key, std::string value) {
    entries.emplace_back(join_path(path_, key), std::move(value));
  }
  std::string path_;
};

// Configs are a few kilobytes. The limit keeps a wrong path (a dataset, a
// device) from being read whole and turned into a huge YAML tree.
constexpr size_t kMaxConfigBytes = size_t{1} << 20;

std::string read_config_file(const std::string& file) {
  std::error_code not_a_directory;
  if (std::filesystem::is_directory(file, not_a_directory))
    throw ConfigError(file + ": is a directory, not a config file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(file + ": cannot open config file");
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) throw ConfigError(file + ": read error");
  if (text.size() > kMaxConfigBytes)
    throw ConfigError(file + ": larger than 1 MiB, which no config file is");
  return text;
}

// YAML::Load, saying what yaml-cpp's depth limit means: it reports too deep
// nesting as "bad file".
YAML::Node load_yaml(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    throw YAML::ParserException(e.mark, "nesting deeper than " + std::to_string(e.depth() - 1) +
                                            " levels");
  }
}

YAML::Node parse_yaml(const std::string& yaml_text, const std::string& source) {
  try {
    return load_yaml(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
}

void apply_node(Config& config, const YAML::Node& root, const std::string& source,
                bool with_lines) {
  Applier applier(root, source, with_lines);
  visit_config(applier, config);
  applier.finish();
}

// What tells two names of one file apart from two files: the canonical path
// where there is one (a missing file is reported when it is read).
std::string file_identity(const std::string& file) {
  std::error_code error;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(file, error);
  if (error || canonical.empty()) canonical = std::filesystem::absolute(file, error).lexically_normal();
  return canonical.string();
}

// The files being read, outermost first: each as named (for messages) and as
// a canonical path (to tell that a base config includes itself).
struct IncludeChain {
  std::vector<std::string> names, canonical;
};

// Applies the config file `file` onto `config`: first its `base:` config (a
// path relative to `file`, itself read by this function), then its own keys.
void apply_file(Config& config, const std::string& file, IncludeChain& chain) {
  const YAML::Node root = parse_yaml(read_config_file(file), file);
  Applier applier(root, file, true);
  if (const YAML::Node base = applier.extra_key("base")) {
    if (!base.IsScalar() || base.Scalar().empty())
      applier.fail(base, "base", "expected the path of a config file, relative to this one");
    const std::filesystem::path path(base.Scalar());
    const std::string resolved =
        path.is_absolute() ? path.string()
                           : (std::filesystem::path(file).parent_path() / path).lexically_normal().string();
    const std::string canonical = file_identity(resolved);
    const auto seen = std::find(chain.canonical.begin(), chain.canonical.end(), canonical);
    if (seen != chain.canonical.end()) {
      std::string cycle;
      for (auto i = static_cast<size_t>(seen - chain.canonical.begin()); i < chain.names.size(); ++i)
        cycle += chain.names[i] + " -> ";
      applier.fail(base, "base", "'" + base.Scalar() + "' leads back to a file being read: " + cycle + resolved);
    }
    chain.names.push_back(resolved);
    chain.canonical.push_back(canonical);
    try {
      apply_file(config, resolved, chain);
    } catch (const ConfigError& e) {
      applier.fail(base, "base", e.what());
    }
    chain.names.pop_back();
    chain.canonical.pop_back();
  }
  visit_config(applier, config);
  applier.finish();
}

}  // namespace

void apply_yaml(Config& config, const std::string& yaml_text, const std::string& source) {
  apply_node(config, parse_yaml(yaml_text, source), source, true);
}

void apply_override(Config& config, const std::string& assignment) {
  std::string source = "--set " + assignment;
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(source + ": expected key.path=value");
  std::string path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = load_yaml(assignment.substr(eq + 1));
  } catch (const YAML::ParserException& e) {
    throw ConfigError(source + ": value is not valid YAML: " + e.msg);
  }
  // Build {a: {b: {c: value}}} from a.b.c and apply it like a file.
  std::vector<std::string> keys;
  std::stringstream parts(path);
  for (std::string k; std::getline(parts, k, '.');) {
    if (k.empty()) throw ConfigError(source + ": empty key in '" + path + "'");
    keys.push_back(k);
  }
  YAML::Node node = value;
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = node;
    node = parent;
  }
  apply_node(config, node, source, false);
}

Config load_config(const std::vector<std::string>& files,
                   const std::vector<std::string>& overrides) {
  Config config;
  for (const auto& file : files) {
    IncludeChain chain{{file}, {file_identity(file)}};
    apply_file(config, file, chain);
  }
  for (const auto& assignment : overrides) apply_override(config, assignment);
  return config;
}

std::string to_yaml(const Config& config) {
  YamlWriter writer;
  Config copy = config;  // the visitor takes non-const references
  visit_config(writer, copy);
  return writer.str();
}

spdlog::level::level_enum spdlog_level(LogLevel level) {
  switch (level) {
    case LogLevel::trace: return spdlog::level::trace;
    case LogLevel::debug: return spdlog::level::debug;
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warn: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
  }
  throw std::logic_error("run.log_level: not a LogLevel value");
}

std::vector<std::pair<std::string, std::string>> flatten(const Config& config) {
  Flattener flattener;
  Config copy = config;
  visit_config(flattener, copy);
  return flattener.entries;
}

}  // namespace muonrun
