#include "trainer/tools/sweep.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "trainer/base/atomic_file.h"
#include "trainer/config/yaml_keys.h"
#include "trainer/io/metrics.h"
#include "trainer/tools/sweep_report.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void fail(const std::string& file, const YAML::Node& node, const std::string& what) {
  const std::string where = node.Mark().is_null() ? file : file + ":" + std::to_string(node.Mark().line + 1);
  throw ConfigError(where + ": " + what);
}

// A key given twice would silently lose its second value: refused, as in
// run configs (trainer/config/yaml_keys.h).
void check_unique_keys(const std::string& file, const YAML::Node& map) {
  if (const auto repeated = repeated_key(map))
    fail(file, repeated->again,
         "key '" + repeated->key + "' given twice (first at line " + std::to_string(repeated->first.line + 1) + ")");
}

// `set:` as key=value overrides.
std::vector<std::string> overrides_of(const std::string& file, const YAML::Node& node) {
  std::vector<std::string> out;
  if (!node) return out;
  if (!node.IsMap()) fail(file, node, "'set' must map config keys to values");
  check_unique_keys(file, node);
  for (const auto& kv : node) {
    if (!kv.second.IsScalar()) fail(file, kv.second, "value of '" + kv.first.Scalar() + "' must be a scalar");
    out.push_back(kv.first.Scalar() + "=" + kv.second.Scalar());
  }
  return out;
}

template <class T>
std::vector<T> list_of(const std::string& file, const YAML::Node& node, const char* key, std::vector<T> fallback) {
  if (!node) return fallback;
  if (!node.IsSequence() || node.size() == 0) fail(file, node, std::string("'") + key + "' must be a non-empty list");
  std::vector<T> out;
  for (const auto& item : node) {
    try {
      out.push_back(item.as<T>());
    } catch (const YAML::Exception&) {
      fail(file, item, std::string("bad entry in '") + key + "': " + item.Scalar());
    }
  }
  return out;
}

void check_keys(const std::string& file, const YAML::Node& node, const std::vector<std::string>& known) {
  check_unique_keys(file, node);
  for (const auto& kv : node)
    if (std::find(known.begin(), known.end(), kv.first.Scalar()) == known.end())
      fail(file, kv.first, "unknown key '" + kv.first.Scalar() + "'");
}

// "AdamW (BC, ZI)" -> "adamw_bc_zi"
std::string slug(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!out.empty() && out.back() != '_') out += '_';
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

// Whether a run directory holds a finished run (metrics up to the last step).
bool finished(const SweepRun& run) {
  try {
    const auto metrics = read_metrics(run.config.run.dir + "/metrics.jsonl");
    return !metrics.empty() && metrics.back().step == run.config.train.steps && metrics.back().val_loss;
  } catch (const std::exception&) {
    return false;  // a half-written line: run it again
  }
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

SweepPlan load_sweep(const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw ConfigError(file + ": cannot read sweep file");
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
  if (!root.IsMap()) throw ConfigError(file + ": a sweep file is a mapping (name, configs, set, seeds, variants)");
  check_keys(file, root, {"name", "title", "configs", "set", "seeds", "lr_multipliers", "variants"});
  SweepPlan plan;
  if (!root["name"]) throw ConfigError(file + ": the sweep needs a 'name'");
  plan.name = root["name"].as<std::string>();
  plan.title = root["title"] ? root["title"].as<std::string>() : plan.name;
  const fs::path dir = fs::path(file).parent_path();
  for (const auto& c : list_of<std::string>(file, root["configs"], "configs", {}))
    plan.config_files.push_back(fs::path(c).is_absolute() ? c : (dir / c).lexically_normal().string());
  plan.overrides = overrides_of(file, root["set"]);
  plan.seeds = list_of<int64_t>(file, root["seeds"], "seeds", {0});
  const auto multipliers = list_of<double>(file, root["lr_multipliers"], "lr_multipliers", {1.0});
  const auto variants = root["variants"];
  if (!variants || !variants.IsSequence() || variants.size() == 0)
    throw ConfigError(file + ": the sweep needs a non-empty list of 'variants'");
  for (const auto& v : variants) {
    if (!v.IsMap() || !v["name"]) fail(file, v, "each variant needs a 'name'");
    check_keys(file, v, {"name", "label", "set", "lr_multipliers"});
    SweepVariant variant{v["name"].as<std::string>(), v["label"] ? v["label"].as<std::string>() : "",
                         overrides_of(file, v["set"]), list_of<double>(file, v["lr_multipliers"], "lr_multipliers", multipliers)};
    for (const auto& other : plan.variants)
      if (slug(other.name) == slug(variant.name)) fail(file, v, "two variants named like '" + variant.name + "'");
    plan.variants.push_back(variant);
  }
  return plan;
}

std::vector<SweepRun> expand_sweep(const SweepPlan& plan, const std::string& out_dir) {
  std::vector<SweepRun> runs;
  for (size_t v = 0; v < plan.variants.size(); ++v) {
    const auto& variant = plan.variants[v];
    auto overrides = plan.overrides;
    overrides.insert(overrides.end(), variant.overrides.begin(), variant.overrides.end());
    Config config;
    try {
      config = load_config(plan.config_files, overrides);
    } catch (const ConfigError& e) {
      throw ConfigError("sweep " + plan.name + ", variant '" + variant.name + "': " + e.what());
    }
    for (double multiplier : variant.lr_multipliers) {
      for (int64_t seed : plan.seeds) {
        SweepRun run{v, multiplier, seed, fmt::format("{}_lr{:g}_s{}", slug(variant.name), multiplier, seed), config};
        run.config.run.seed = seed;
        run.config.run.name = run.id;
        run.config.run.dir = (fs::path(out_dir) / "runs" / run.id).string();
        run.config.optim.muon.lr *= multiplier;
        for (double* lr : {&run.config.optim.adam.embed_lr, &run.config.optim.adam.head_lr,
                           &run.config.optim.adam.scalar_lr, &run.config.optim.adam.matrix_lr})
          *lr *= multiplier;
        runs.push_back(std::move(run));
      }
    }
  }
  return runs;
}

void run_sweep(const SweepOptions& options) {
  const SweepPlan plan = load_sweep(options.file);
  const std::string out_dir = options.out_dir.empty() ? "runs/sweeps/" + plan.name : options.out_dir;
  const auto runs = expand_sweep(plan, out_dir);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> statuses;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& run = runs[i];
    if (options.report_only || finished(run)) {
      statuses.push_back(finished(run) ? "ok" : "not run");
      continue;
    }
    const fs::path config_file = fs::path(out_dir) / "configs" / (run.id + ".yaml");
    const fs::path log_file = fs::path(out_dir) / "logs" / (run.id + ".txt");
    fs::create_directories(config_file.parent_path());
    fs::create_directories(log_file.parent_path());
    write_file_atomically(config_file.string(), to_yaml(run.config));
    const std::string command = (options.launcher.empty() ? "" : options.launcher + " ") + shell_quote(self) +
                                " --log-level warn train -c " + shell_quote(config_file.string()) + " > " +
                                shell_quote(log_file.string()) + " 2>&1";
    spdlog::info("[{}/{}] {}", i + 1, runs.size(), run.id);
    const auto start = std::chrono::steady_clock::now();
    const int rc = std::system(command.c_str());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    statuses.push_back(code == 0 ? "ok" : fmt::format("failed (exit {}, see {})", code, log_file.string()));
    spdlog::info("[{}/{}] {}: {} in {:.0f} s", i + 1, runs.size(), run.id, statuses.back(), seconds);
  }
  const std::string report_dir = options.report_dir.empty() ? out_dir : options.report_dir;
  write_sweep_report(plan, runs, statuses, report_dir);
  spdlog::info("sweep {}: {}/results.md, results.csv and plots/", plan.name, report_dir);
}

}  // namespace muonrun
