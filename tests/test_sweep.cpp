// `muonrun sweep`: a grid of tiny runs from one YAML file, the results table
// and CSV (checked against the runs' own metrics), plots, resumption.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/pattern_shards.h"
#include "tests/run_results.h"
#include "tests/test_helpers.h"
#include "trainer/run/train_step.h"
#include "trainer/tools/sweep.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

int run_sweep_command(const fs::path& dir, const std::string& args) {
  const std::string command = "OMP_WAIT_POLICY=PASSIVE " + std::string(MUONRUN_BINARY) + " sweep " + args + " > " +
                              (dir / "sweep_output.txt").string() + " 2>&1";
  return std::system(command.c_str());
}

// Two variants, one of them at two lr multipliers: three runs of 6 steps.
fs::path write_sweep(const fs::path& dir) {
  tests::write_pattern_shards(dir);
  write_text(dir / "base.yaml",
             "model: {vocab_size: 64, layers: 2, heads: 2, head_dim: 8, dim: 16, seq_len: 16}\n"
             "train: {micro_batch: 4, batch_tokens: 128, val_every: 3, val_tokens: 128, val_loss_target: 0,\n"
             "        timing_warmup_steps: 0}\n"
             "optim: {adam: {embed_lr: 0.05, head_lr: 0.01}, muon: {lr: 0.02}}\n"
             "data: {train: " + (dir / "train_*.bin").string() + ", val: " + (dir / "val_*.bin").string() + "}\n");
  write_text(dir / "sweep.yaml",
             "name: tiny\ntitle: A tiny sweep\nconfigs: [base.yaml]\nset: {train.steps: 6}\nseeds: [0]\n"
             "variants:\n"
             "  - name: Muon\n    label: recipe\n"
             "  - name: MuonMax Momo\n    set: {optim.preset: muonmax, optim.momo.enabled: true}\n"
             "    lr_multipliers: [0.5, 1]\n");
  return dir / "sweep.yaml";
}

}  // namespace

TEST(Sweep, RunsTheGridAndTabulatesItsMetrics) {
  const fs::path dir = tests::scratch_dir("sweep");
  const fs::path file = write_sweep(dir), out = dir / "out";
  ASSERT_EQ(run_sweep_command(dir, file.string() + " --out " + out.string()), 0) << tests::read_file(dir / "sweep_output.txt");

  const std::string md = tests::read_file(out / "results.md");
  for (const char* text : {"# A tiny sweep", "| Muon | recipe | 1 |", "| MuonMax Momo |  | ", "x0.5", "Final val loss"})
    EXPECT_NE(md.find(text), std::string::npos) << text << "\n" << md;
  // Every CSV row carries the final val loss its run wrote in metrics.jsonl.
  std::ifstream csv(out / "results.csv");
  std::string line;
  std::getline(csv, line);
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    const std::string run_dir = line.substr(line.rfind(',') + 1);
    const auto metrics = tests::read_metrics(fs::path(run_dir) / "metrics.jsonl");
    ASSERT_FALSE(metrics.empty()) << run_dir;
    ASSERT_TRUE(metrics.back().val_loss) << run_dir;
    EXPECT_NE(line.find(",\"ok\","), std::string::npos) << line;
    std::stringstream fields(line.substr(line.find(",\"ok\",") + 6));
    double val_loss = 0;
    fields >> val_loss;
    EXPECT_NEAR(val_loss, *metrics.back().val_loss, 1e-9) << line;
  }
  EXPECT_EQ(rows, 3);
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0) {
    for (const char* png : {"tiny_val.png", "tiny_train.png", "tiny_lr.png"})
      EXPECT_GT(fs::file_size(out / "plots" / png), 1000u) << png;
  }

  // Again: finished runs are kept, only the report is rewritten.
  const auto stamp = fs::last_write_time(out / "runs" / "muon_lr1_s0" / "metrics.jsonl");
  fs::remove(out / "results.md");
  ASSERT_EQ(run_sweep_command(dir, file.string() + " --out " + out.string()), 0);
  EXPECT_EQ(fs::last_write_time(out / "runs" / "muon_lr1_s0" / "metrics.jsonl"), stamp);
  EXPECT_TRUE(fs::exists(out / "results.md"));
}

TEST(Sweep, ErrorsNameTheFileAndLine) {
  const fs::path dir = tests::scratch_dir("sweep_errors");
  const fs::path file = write_sweep(dir);
  write_text(file, tests::read_file(file) + "seedz: [1]\n");
  EXPECT_NE(run_sweep_command(dir, file.string()), 0);
  EXPECT_NE(tests::read_file(dir / "sweep_output.txt").find("sweep.yaml:12: unknown key 'seedz'"), std::string::npos)
      << tests::read_file(dir / "sweep_output.txt");
  write_text(file, "name: bad\nvariants:\n  - name: x\n    set: {optim.muon.lr: -1}\n");
  EXPECT_NE(run_sweep_command(dir, file.string()), 0);
  EXPECT_NE(tests::read_file(dir / "sweep_output.txt").find("variant 'x'"), std::string::npos) << tests::read_file(dir / "sweep_output.txt");
  // A key given twice, at the top, in a variant or in a `set`, would lose one of its values.
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"name: a\nseeds: [0]\nseeds: [1]\nvariants: [{name: x}]\n", "sweep.yaml:3: key 'seeds' given twice"},
           {"name: a\nvariants:\n  - {name: x, label: y, label: z}\n", "sweep.yaml:3: key 'label' given twice"},
           {"name: a\nvariants:\n  - name: x\n    set:\n      train.steps: 5\n      train.steps: 6\n",
            "sweep.yaml:6: key 'train.steps' given twice"}}) {
    write_text(file, text);
    EXPECT_NE(run_sweep_command(dir, file.string()), 0) << text;
    EXPECT_NE(tests::read_file(dir / "sweep_output.txt").find(expected), std::string::npos)
        << tests::read_file(dir / "sweep_output.txt");
  }
}

// Every sweep the project ships (configs/ablations/*.yaml but the run config
// they share) loads, and each of its runs builds its model and plans its
// batches: a key renamed in the schema (model.skip_in -> model.skips) or a
// value only the model checks (a skip past the last layer) cannot hide in one.
TEST(Sweep, EveryShippedSweepLoadsAndResolvesItsRuns) {
  const fs::path dir = fs::path(MUONRUN_SOURCE_DIR) / "configs" / "ablations";
  int sweeps = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml" || tests::read_file(entry.path()).find("\nvariants:") == std::string::npos)
      continue;
    SCOPED_TRACE(entry.path().string());
    const SweepPlan plan = load_sweep(entry.path().string());
    const auto runs = expand_sweep(plan, tests::scratch_dir("shipped_sweeps").string());
    for (const auto& run : runs) {
      SCOPED_TRACE(run.id);
      EXPECT_NO_THROW({
        const LanguageModel model = make_model(run.config, torch::kCPU);
        plan_batches(run.config, 1, model->layout());
      });
    }
    size_t expected = 0;
    for (const auto& v : plan.variants) expected += v.lr_multipliers.size() * plan.seeds.size();
    EXPECT_EQ(runs.size(), expected) << plan.name;
    ++sweeps;
  }
  EXPECT_GE(sweeps, 4);
}
