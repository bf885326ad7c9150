#include "trainer/tools/compare.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

#include "comm/world.h"
#include "trainer/base/atomic_file.h"
#include "trainer/config/config.h"
#include "trainer/io/metrics.h"
#include "trainer/tools/plots.h"
#include "trainer/tools/t_test.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

struct Run {
  RunSummary summary;
  std::vector<StepMetrics> metrics;
};

std::string trimmed(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

Run read_run(const std::string& dir, const std::optional<double>& target) {
  const std::string path = dir + "/metrics.jsonl";
  if (!fs::is_regular_file(path)) throw std::runtime_error(path + ": no such file (is " + dir + " a run directory?)");
  Run run{{}, read_metrics(path)};
  if (run.metrics.empty()) throw std::runtime_error(path + ": no records");
  RunSummary& s = run.summary;
  s.dir = dir;
  s.label = fs::path(dir).filename().string();
  for (const auto& m : run.metrics) {
    s.last_step = m.step;
    s.step_avg_ms = m.step_avg_ms;
    if (!m.val_loss || !std::isfinite(*m.val_loss)) continue;
    s.final_val_loss = *m.val_loss;
    if (!s.best_val_loss || *m.val_loss < *s.best_val_loss) {
      s.best_val_loss = *m.val_loss;
      s.best_val_step = m.step;
    }
    if (target && !s.target_time_ms && *m.val_loss <= *target) {
      s.target_time_ms = m.train_time_ms;
      s.target_step = m.step;
    }
  }
  return run;
}

// The run's config.yaml, if it has one: compare finds the runs' target, their
// groups and how far each should have run in it.
std::optional<Config> run_config(const std::string& dir) {
  const std::string path = dir + "/config.yaml";
  if (!fs::exists(path)) return std::nullopt;
  try {
    return load_config({path}, {});
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (compare reads each run's config.yaml for its target, group and steps)");
  }
}

// The run's group: --group, or the hash of its config without the run.* keys
// (name, directory, seed, device, logging: repeats of one recipe).
std::string group_of(const std::optional<Config>& config, const std::optional<std::string>& group) {
  if (group) return *group;
  if (!config) return "(no config.yaml)";
  std::string text;
  for (const auto& [key, value] : flatten(*config))
    if (key.rfind("run.", 0) != 0) text += key + "=" + value + "\n";
  return fmt::format("config {:08x}", fnv1a(text.data(), text.size()) & 0xffffffffu);
}

// Why a run cannot count towards its group's statistics, or "".
std::string why_left_out(const RunSummary& s, const std::optional<Config>& config) {
  if (!s.final_val_loss) return "no finite validation loss";
  if (!config) return "";  // nothing says how far it should have run
  // A run ends at train.steps, or earlier once validation reaches train.val_loss_target.
  const double stop_at = config->train.val_loss_target;
  if (s.last_step < config->train.steps && !(stop_at > 0 && *s.final_val_loss <= stop_at))
    return fmt::format("stopped at step {} of {}", s.last_step, config->train.steps);
  return "";
}

// The groups' statistics, in the order their first run was given.
std::string group_table(const std::vector<Run>& runs, double target, const std::optional<double>& time_target) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const RunSummary*>> members;
  for (const auto& run : runs) {
    if (!members.count(run.summary.group)) order.push_back(run.summary.group);
    members[run.summary.group].push_back(&run.summary);
  }
  std::string md = fmt::format("\n## Groups: final validation loss against {:g} (one-sided t-test)\n\n", target);
  md += "| Group | Runs | n | Mean val loss | Std | Mean time to target | p (mean <= " + fmt::format("{:g}", target) +
        ") |\n|---|---|---|---|---|---|---|\n";
  std::string left;
  for (const auto& group : order) {
    std::vector<double> losses, times;
    std::string names;
    for (const RunSummary* s : members[group]) {
      names += (names.empty() ? "" : ", ") + s->label;
      if (!s->left_out.empty()) {
        left += fmt::format("- {} ({}): {}\n", s->label, group, s->left_out);
        continue;
      }
      losses.push_back(*s->final_val_loss);
      if (s->target_time_ms) times.push_back(*s->target_time_ms / 1000);
    }
    const TTest t = t_test_mean_below(losses, target);
    std::string time = "-";
    if (time_target && !losses.empty()) {
      double sum = 0;
      for (double x : times) sum += x;
      time = times.empty() ? fmt::format("not reached (0 of {})", losses.size())
                           : fmt::format("{:.1f} s ({} of {} reached {:g})", sum / static_cast<double>(times.size()),
                                         times.size(), losses.size(), *time_target);
    }
    std::string p = "-";
    if (t.p_value) p = fmt::format("{:.3g}", *t.p_value);
    else if (t.n >= 2) p = t.mean <= target ? "0 (all equal)" : "1 (all equal)";
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", group, names, t.n,
                      t.n > 0 ? fmt::format("{:.4f}", t.mean) : "-", t.n >= 2 ? fmt::format("{:.4f}", t.stddev) : "-",
                      time, p);
  }
  if (!left.empty()) md += "\nLeft out of the statistics:\n" + left;
  return md;
}

// train.val_loss_target of the runs' configs, when they agree on one.
std::optional<double> configured_target(const std::vector<std::optional<Config>>& configs) {
  std::set<double> targets;
  for (const auto& config : configs)
    if (config && config->train.val_loss_target > 0) targets.insert(config->train.val_loss_target);
  if (targets.size() > 1)
    spdlog::warn("compare: the runs have different train.val_loss_target values; no time-to-target column "
                 "(give --target)");
  if (targets.size() != 1) return std::nullopt;
  return *targets.begin();
}

std::string table(const std::vector<Run>& runs, const std::optional<double>& target) {
  std::string md = "| Run | Steps | Final val loss | Best val loss (step) |";
  std::string rule = "|---|---|---|---|";
  if (target) {
    md += fmt::format(" Time to val loss {:g} |", *target);
    rule += "---|";
  }
  md += " step_avg |\n" + rule + "---|\n";
  for (const auto& run : runs) {
    const RunSummary& s = run.summary;
    md += fmt::format("| {} | {} | {} | {} |", s.label, s.last_step,
                      s.final_val_loss ? fmt::format("{:.4f}", *s.final_val_loss) : "-",
                      s.best_val_loss ? fmt::format("{:.4f} ({})", *s.best_val_loss, s.best_val_step) : "-");
    if (target)
      md += s.target_time_ms ? fmt::format(" {:.1f} s (step {}) |", *s.target_time_ms / 1000, s.target_step)
                             : std::string(" not reached |");
    md += fmt::format(" {:.2f} ms |\n", s.step_avg_ms);
  }
  return md;
}

// Loss against step or training time (s), one series per run.
Points curve(const std::vector<StepMetrics>& metrics, bool validation, bool by_time) {
  Points points;
  for (const auto& m : metrics) {
    const auto& loss = validation ? m.val_loss : m.train_loss;
    if (loss && std::isfinite(*loss))
      points.emplace_back(by_time ? m.train_time_ms / 1000 : static_cast<double>(m.step), *loss);
  }
  return validation ? points : ema_smoothed(points);
}

}  // namespace

Comparison compare_runs(const CompareOptions& options) {
  if (options.run_dirs.empty()) throw std::invalid_argument("compare: no run directories given");
  Comparison out;
  std::vector<std::string> dirs;
  std::vector<std::optional<Config>> configs;  // each run's, read once
  for (const auto& dir : options.run_dirs) {
    dirs.push_back(trimmed(dir));
    configs.push_back(run_config(dirs.back()));
  }
  out.target = options.target ? options.target : configured_target(configs);
  std::vector<Run> runs;
  std::map<std::string, int> label_count;
  for (const auto& dir : dirs) {
    runs.push_back(read_run(dir, out.target));
    ++label_count[runs.back().summary.label];
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    RunSummary& s = runs[i].summary;
    if (label_count[s.label] > 1) s.label = s.dir;
    s.group = group_of(configs[i], options.group);
    s.left_out = why_left_out(s, configs[i]);
  }
  for (const auto& run : runs) out.runs.push_back(run.summary);
  out.stats_target = out.target ? *out.target : kSpeedrunTarget;
  out.table = table(runs, out.target) + group_table(runs, out.stats_target, out.target);
  fs::create_directories(options.out_dir);
  write_file_atomically(options.out_dir + "/compare.md", out.table);

  std::vector<Plot> plots;
  for (const bool validation : {true, false})
    for (const bool by_time : {false, true}) {
      Plot plot;
      const std::string what = validation ? "val" : "train";
      plot.png = fmt::format("{}_loss_by_{}.png", what, by_time ? "time" : "step");
      plot.title = validation ? "validation loss" : "training loss (EMA 0.9)";
      plot.xlabel = by_time ? "training time (s)" : "step";
      plot.ylabel = what + " loss";
      for (const auto& run : runs) plot.series.push_back({run.summary.label, curve(run.metrics, validation, by_time)});
      plots.push_back(plot);
    }
  write_plots(options.out_dir, "compare", plots);
  return out;
}

}  // namespace muonrun
