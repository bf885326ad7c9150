#include "trainer/tools/sweep_report.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "trainer/base/atomic_file.h"
#include "trainer/io/metrics.h"
#include "trainer/tools/plots.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// What one run left behind.
struct Outcome {
  const SweepRun* run;
  std::string status;
  std::vector<StepMetrics> metrics;
  double val_loss = kNaN, train_loss = kNaN, step_avg_ms = kNaN;  // at the end
  bool complete() const { return status == "ok" && std::isfinite(val_loss); }
};

Outcome outcome_of(const SweepRun& run, const std::string& status) {
  Outcome o{&run, status, {}};
  try {
    o.metrics = read_metrics(run.config.run.dir + "/metrics.jsonl");
  } catch (const std::exception& e) {
    o.status = std::string("unreadable metrics: ") + e.what();
  }
  for (const auto& m : o.metrics) {
    if (m.train_loss) o.train_loss = *m.train_loss;
    if (m.val_loss && m.step == run.config.train.steps) o.val_loss = *m.val_loss;
    o.step_avg_ms = m.step_avg_ms;
  }
  if (o.status == "ok" && !std::isfinite(o.val_loss)) o.status = "no final validation loss";
  return o;
}

// The runs of one variant at one lr multiplier (its seeds).
struct Cell {
  std::vector<const Outcome*> seeds;
  int complete() const {
    int n = 0;
    for (const auto* o : seeds) n += o->complete();
    return n;
  }
  // Mean and standard deviation of a final value over the complete seeds.
  std::pair<double, double> stats(double Outcome::*field) const {
    double sum = 0, sum_sq = 0;
    const int n = complete();
    for (const auto* o : seeds)
      if (o->complete()) {
        sum += o->*field;
        sum_sq += (o->*field) * (o->*field);
      }
    if (n == 0) return {kNaN, kNaN};
    const double mean = sum / n;
    return {mean, n > 1 ? std::sqrt(std::max(0.0, (sum_sq - n * mean * mean) / (n - 1))) : 0.0};
  }
  double val_loss() const { return stats(&Outcome::val_loss).first; }
};

std::string cell_text(const Cell& cell) {
  const int n = cell.complete();
  if (n == 0) return "diverged/failed";
  const auto [mean, sd] = cell.stats(&Outcome::val_loss);
  std::string text = cell.seeds.size() > 1 ? fmt::format("{:.4f} ± {:.4f}", mean, sd) : fmt::format("{:.4f}", mean);
  if (n < static_cast<int>(cell.seeds.size())) text += fmt::format(" ({} of {} seeds)", n, cell.seeds.size());
  return text;
}

std::string lrs_text(const Config& c) {
  const auto& a = c.optim.adam;
  if (c.optim.matrix_optimizer == MatrixOptimizer::adamw)
    return fmt::format("- | {:g} / {:g} / {:g} / {:g}", a.embed_lr, a.head_lr, a.scalar_lr, a.matrix_lr);
  return fmt::format("{:g} | {:g} / {:g} / {:g}", c.optim.muon.lr, a.embed_lr, a.head_lr, a.scalar_lr);
}

// Mean over seeds of a loss at each step where all complete seeds have one.
std::vector<std::pair<int64_t, double>> mean_curve(const Cell& cell, bool validation) {
  std::map<int64_t, std::pair<double, int>> sums;
  for (const auto* o : cell.seeds) {
    if (!o->complete()) continue;
    for (const auto& m : o->metrics) {
      const auto& loss = validation ? m.val_loss : m.train_loss;
      if (loss && std::isfinite(*loss)) {
        sums[m.step].first += *loss;
        sums[m.step].second += 1;
      }
    }
  }
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& [step, s] : sums)
    if (s.second == cell.complete()) out.emplace_back(step, s.first / s.second);
  return out;
}

Points as_points(const std::vector<std::pair<int64_t, double>>& curve) { return {curve.begin(), curve.end()}; }

}  // namespace

void write_sweep_report(const SweepPlan& plan, const std::vector<SweepRun>& runs,
                        const std::vector<std::string>& statuses, const std::string& report_dir) {
  fs::create_directories(report_dir);
  std::vector<Outcome> outcomes;
  for (size_t i = 0; i < runs.size(); ++i) outcomes.push_back(outcome_of(runs[i], statuses[i]));
  // variant -> lr multiplier -> its seeds
  std::vector<std::map<double, Cell>> cells(plan.variants.size());
  std::set<double> multipliers;
  for (const auto& o : outcomes) {
    cells[o.run->variant][o.run->lr_multiplier].seeds.push_back(&o);
    multipliers.insert(o.run->lr_multiplier);
  }

  // results.csv
  std::string csv = "variant,label,lr_multiplier,seed,muon_lr,embed_lr,head_lr,scalar_lr,matrix_lr,status,"
                    "final_val_loss,final_train_loss,step_avg_ms,run_dir\n";
  for (const auto& o : outcomes) {
    const auto& c = o.run->config;
    csv += fmt::format("\"{}\",\"{}\",{:g},{},{:g},{:g},{:g},{:g},{:g},\"{}\",{},{},{},{}\n",
                       plan.variants[o.run->variant].name, plan.variants[o.run->variant].label, o.run->lr_multiplier,
                       o.run->seed, c.optim.muon.lr, c.optim.adam.embed_lr, c.optim.adam.head_lr,
                       c.optim.adam.scalar_lr, c.optim.adam.matrix_lr, o.status, o.val_loss, o.train_loss,
                       o.step_avg_ms, c.run.dir);
  }
  write_file_atomically(report_dir + "/results.csv", csv);

  // results.md: the best multiplier of each variant, then the grid.
  const Config& first = runs.front().config;
  std::string md = fmt::format(
      "# {}\n\nSweep `{}`: {} runs ({} variants; seeds {}; {} steps of {} tokens each). Final validation loss "
      "on {} tokens, mean ± std over the seeds that finished.\n\n## Best lr multiplier per variant\n\n"
      "| Variant | Name | lr x | Muon lr | AdamW lr (embed / head / scalar{}) | Final val loss | Val ppl | "
      "Final train loss | ms/step |\n|---|---|---|---|---|---|---|---|---|\n",
      plan.title, plan.name, runs.size(), plan.variants.size(), fmt::join(plan.seeds, ", "), first.train.steps,
      first.train.batch_tokens, first.train.val_tokens, first.optim.matrix_optimizer == MatrixOptimizer::adamw ? " / matrix" : "");
  std::vector<std::optional<double>> best(plan.variants.size());
  for (size_t v = 0; v < plan.variants.size(); ++v) {
    for (const auto& [multiplier, cell] : cells[v])
      if (cell.complete() > 0 && (!best[v] || cell.val_loss() < cells[v].at(*best[v]).val_loss())) best[v] = multiplier;
    const auto& variant = plan.variants[v];
    if (!best[v]) {
      md += fmt::format("| {} | {} | - | - | - | diverged/failed | - | - | - |\n", variant.name, variant.label);
      continue;
    }
    const Cell& cell = cells[v].at(*best[v]);
    md += fmt::format("| {} | {} | {:g} | {} | {} | {:.2f} | {:.4f} | {:.0f} |\n", variant.name, variant.label,
                      *best[v], lrs_text(cell.seeds.front()->run->config), cell_text(cell),
                      std::exp(cell.val_loss()), cell.stats(&Outcome::train_loss).first,
                      cell.stats(&Outcome::step_avg_ms).first);
  }
  if (multipliers.size() > 1) {
    md += "\n## Every lr multiplier (final val loss)\n\n| Variant |";
    std::string rule = "|---|";
    for (double m : multipliers) {
      md += fmt::format(" x{:g} |", m);
      rule += "---|";
    }
    md += "\n" + rule + "\n";
    for (size_t v = 0; v < plan.variants.size(); ++v) {
      md += "| " + plan.variants[v].name + " |";
      for (double m : multipliers) md += " " + (cells[v].count(m) ? cell_text(cells[v].at(m)) : std::string()) + " |";
      md += "\n";
    }
  }
  std::string failures;
  for (const auto& o : outcomes)
    if (!o.complete()) failures += fmt::format("- `{}`: {}\n", o.run->id, o.status);
  if (!failures.empty()) md += "\n## Runs that did not finish\n\n" + failures;
  write_file_atomically(report_dir + "/results.md", md);

  // Plots: loss curves of each variant at its best multiplier, and lr sensitivity.
  Plot val{plan.name + "_val.png", plan.title + ": validation loss", "step", "val loss", false, {}};
  Plot train{plan.name + "_train.png", plan.title + ": training loss (EMA 0.9)", "step", "train loss", false, {}};
  Plot lr{plan.name + "_lr.png", plan.title + ": lr sensitivity", "lr multiplier", "final val loss", true, {}};
  for (size_t v = 0; v < plan.variants.size(); ++v) {
    const std::string title = plan.variants[v].name + (plan.variants[v].label.empty() ? "" : " " + plan.variants[v].label);
    if (best[v]) {
      const Cell& cell = cells[v].at(*best[v]);
      const std::string with_lr = fmt::format("{} (lr x{:g})", title, *best[v]);
      val.series.push_back({with_lr, as_points(mean_curve(cell, true))});
      train.series.push_back({with_lr, ema_smoothed(as_points(mean_curve(cell, false)))});
    }
    Points sensitivity;
    for (const auto& [multiplier, cell] : cells[v])
      if (cell.complete() > 0) sensitivity.emplace_back(multiplier, cell.val_loss());
    if (cells[v].size() > 1 && !sensitivity.empty()) lr.series.push_back({title, sensitivity});
  }
  // The tables are written: a sweep of many runs does not fail for want of gnuplot.
  try {
    write_plots((fs::path(report_dir) / "plots").string(), plan.name, {val, train, lr});
  } catch (const PlotError& e) {
    spdlog::warn("sweep report: {}", e.what());
  }
}

}  // namespace muonrun
