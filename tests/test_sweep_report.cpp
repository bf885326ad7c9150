// The sweep report renders its plots by running gnuplot in the plots
// directory through the shell: the command must work whatever the directory
// and the sweep are called (quotes, spaces). A stand-in gnuplot on PATH
// records where it ran and what it was given.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_helpers.h"
#include "trainer/config/config.h"
#include "trainer/io/metrics.h"
#include "trainer/tools/sweep.h"
#include "trainer/tools/sweep_report.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

// PATH with a fake gnuplot first, for the life of the object.
struct FakeGnuplot {
  explicit FakeGnuplot(const fs::path& bin) : saved(std::getenv("PATH") ? std::getenv("PATH") : "") {
    fs::create_directories(bin);
    std::ofstream(bin / "gnuplot") << "#!/bin/sh\nprintf '%s\\n' \"$(pwd -P)\" \"$1\" > gnuplot_ran\n";
    fs::permissions(bin / "gnuplot", fs::perms::owner_all);
    setenv("PATH", (bin.string() + ":" + saved).c_str(), 1);
  }
  ~FakeGnuplot() { setenv("PATH", saved.c_str(), 1); }
  std::string saved;
};

// One finished run of one variant, with its metrics.jsonl.
void write_report(const fs::path& report_dir, const std::string& sweep_name) {
  SweepPlan plan;
  plan.name = sweep_name;
  plan.title = "A sweep";
  plan.seeds = {0};
  plan.variants.push_back({"Muon", "", {}, {1.0}});
  SweepRun run{0, 1.0, 0, "muon_lr1_s0", Config{}};
  run.config.train.steps = 2;
  run.config.run.dir = (report_dir / "runs" / run.id).string();
  fs::create_directories(run.config.run.dir);
  {
    MetricsFile metrics(run.config.run.dir + "/metrics.jsonl");
    for (int64_t step = 0; step <= 2; ++step) {
      StepMetrics m;
      m.step = step;
      m.total_steps = 2;
      m.val_loss = 4.0 - step;
      if (step > 0) m.train_loss = 4.5 - step;
      metrics.write(m);
    }
  }
  write_sweep_report(plan, {run}, {"ok"}, report_dir.string());
}

}  // namespace

TEST(SweepReport, GnuplotRunsInAPlotsDirectoryWithAQuoteInItsName) {
  const fs::path dir = tests::scratch_dir("sweep_report_quote");
  FakeGnuplot gnuplot(dir / "bin");
  const fs::path report = dir / "it's a sweep";
  write_report(report, "o'brien");
  const fs::path plots = report / "plots";
  ASSERT_TRUE(fs::exists(plots / "o'brien.gp"));
  ASSERT_TRUE(fs::exists(plots / "gnuplot_ran")) << "gnuplot did not run in " << plots;
  EXPECT_EQ(tests::read_file(plots / "gnuplot_ran"), fs::canonical(plots).string() + "\no'brien.gp\n");
}

TEST(SweepReport, ShellQuoteKeepsEveryCharacter) {
  for (const std::string s : {"", "plain", "it's", "''", "a b", "$HOME `x` \"y\" \\ ; | & * ?"}) {
    const fs::path out = tests::scratch_dir("sweep_report_shell_quote") / "out.txt";
    const std::string command = "printf '%s' " + shell_quote(s) + " > " + shell_quote(out.string());
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    EXPECT_EQ(tests::read_file(out), s) << command;
  }
}
