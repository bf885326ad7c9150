// `muonrun compare`: the table's numbers for two hand-written metrics.jsonl
// files against values worked out by hand here, the target taken from the
// runs' config.yaml, a bad record named by file and line, the PNGs gnuplot
// renders, and a clear failure without gnuplot; the groups' statistics, and
// Student's t distribution against printed table values and closed forms.
#include <gtest/gtest.h>
#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/test_helpers.h"
#include "trainer/config/config.h"
#include "trainer/tools/compare.h"
#include "trainer/tools/plots.h"
#include "trainer/tools/t_test.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

// Run a: val 4.0, 3.2, 3.3 at steps 0, 10, 20 (best at 10, below 3.25 first
// at 10 after 1.5 s). Run b: val 4.0, 3.5, 3.1 (best and below 3.25 at 20,
// after 4.1 s). The train-only lines in between carry no val_loss.
fs::path two_runs(const std::string& name) {
  const fs::path dir = tests::scratch_dir("compare_" + name);
  write_text(dir / "a" / "metrics.jsonl",
             "{\"step\":0,\"val_loss\":4.0,\"train_time_ms\":0,\"step_avg_ms\":0}\n"
             "{\"step\":5,\"train_loss\":3.9,\"train_time_ms\":750,\"step_avg_ms\":150}\n"
             "{\"step\":10,\"train_loss\":3.4,\"val_loss\":3.2,\"train_time_ms\":1500,\"step_avg_ms\":150}\n"
             "{\"step\":20,\"train_loss\":3.1,\"val_loss\":3.3,\"train_time_ms\":3000,\"step_avg_ms\":150}\n");
  write_text(dir / "b" / "metrics.jsonl",
             "{\"step\":0,\"val_loss\":4.0,\"train_time_ms\":0,\"step_avg_ms\":0}\n"
             "{\"step\":10,\"train_loss\":3.6,\"val_loss\":3.5,\"train_time_ms\":2000,\"step_avg_ms\":200}\n"
             "{\"step\":20,\"train_loss\":3.2,\"val_loss\":3.1,\"train_time_ms\":4100,\"step_avg_ms\":205}\n");
  return dir;
}

bool is_png(const fs::path& file) { return tests::read_file(file).rfind("\x89PNG\r\n\x1a\n", 0) == 0; }

bool have_gnuplot() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

}  // namespace

TEST(Compare, TableHoldsFinalBestTimeToTargetAndStepAvg) {
  const fs::path dir = two_runs("table");
  CompareOptions options{{(dir / "a").string(), (dir / "b/").string()}, (dir / "out").string(), 3.25, std::nullopt};
  Comparison c;
  try {
    c = compare_runs(options);
  } catch (const PlotError&) {  // no gnuplot: the table is written all the same
  }
  const std::string table = tests::read_file(dir / "out" / "compare.md");
  EXPECT_EQ(table.substr(0, table.find("\n## Groups")),
            "| Run | Steps | Final val loss | Best val loss (step) | Time to val loss 3.25 | step_avg |\n"
            "|---|---|---|---|---|---|\n"
            "| a | 20 | 3.3000 | 3.2000 (10) | 1.5 s (step 10) | 150.00 ms |\n"
            "| b | 20 | 3.1000 | 3.1000 (20) | 4.1 s (step 20) | 205.00 ms |\n");
  // A target no run reaches.
  options.target = 3.0;
  try {
    c = compare_runs(options);
  } catch (const PlotError&) {
  }
  EXPECT_NE(tests::read_file(dir / "out" / "compare.md").find("| a | 20 | 3.3000 | 3.2000 (10) | not reached | 150.00 ms |"),
            std::string::npos);
}

TEST(Compare, TargetComesFromTheRunsConfigsWhenTheyAgree) {
  const fs::path dir = two_runs("configured");
  const CompareOptions options{{(dir / "a").string(), (dir / "b").string()}, (dir / "out").string(), std::nullopt, std::nullopt};
  auto table = [&] {
    try {
      return compare_runs(options).table;
    } catch (const PlotError&) {
      return tests::read_file(dir / "out" / "compare.md");
    }
  };
  EXPECT_EQ(table().find("Time to"), std::string::npos) << "no config.yaml: no target column";
  for (const char* run : {"a", "b"})
    write_text(dir / run / "config.yaml", to_yaml(load_config({}, {"train.val_loss_target=3.25"})));
  EXPECT_NE(table().find("| b | 20 | 3.1000 | 3.1000 (20) | 4.1 s (step 20) | 205.00 ms |"), std::string::npos) << table();
  write_text(dir / "b" / "config.yaml", to_yaml(load_config({}, {"train.val_loss_target=3.4"})));
  EXPECT_EQ(table().find("Time to"), std::string::npos) << "targets differ: no column";
}

// Student's t CDF: one-sided 1% critical values from the printed table
// (t_{0.99} for 1, 2, 4, 9 and 30 degrees of freedom; t_{0.975} for 10), and
// closed forms: 1 dof is Cauchy, 0.5 + atan(t)/pi; 2 dof, 0.5 + t / (2 sqrt(2 + t^2)).
TEST(TTest, StudentTMatchesTheTableAndClosedForms) {
  for (const auto& [dof, critical] : std::vector<std::pair<double, double>>{
           {1, 31.821}, {2, 6.965}, {4, 3.747}, {9, 2.821}, {30, 2.457}}) {
    EXPECT_NEAR(student_t_cdf(-critical, dof), 0.01, 2e-5) << dof << " dof";
    EXPECT_NEAR(student_t_cdf(critical, dof), 0.99, 2e-5) << dof << " dof";
  }
  EXPECT_NEAR(student_t_cdf(-2.228, 10), 0.025, 2e-5);
  for (double t : {-40.0, -3.0, -0.7, 0.0, 0.2, 1.0, 5.0}) {
    EXPECT_NEAR(student_t_cdf(t, 1), 0.5 + std::atan(t) / M_PI, 1e-12) << t;
    EXPECT_NEAR(student_t_cdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-12) << t;
  }
  // The test itself on three losses (2 dof), worked out with the closed form.
  const std::vector<double> losses = {3.270, 3.275, 3.272};
  const TTest r = t_test_mean_below(losses, 3.28);
  const double mean = (3.270 + 3.275 + 3.272) / 3;
  double ss = 0;
  for (double x : losses) ss += (x - mean) * (x - mean);
  const double sd = std::sqrt(ss / 2), t = (mean - 3.28) / (sd / std::sqrt(3.0));
  EXPECT_EQ(r.n, 3);
  EXPECT_NEAR(r.mean, mean, 1e-12);
  EXPECT_NEAR(r.stddev, sd, 1e-12);
  ASSERT_TRUE(r.p_value);
  EXPECT_NEAR(*r.p_value, 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-10);
  EXPECT_FALSE(t_test_mean_below({3.2}, 3.28).p_value) << "one run: no test";
  EXPECT_FALSE(t_test_mean_below({3.2, 3.2}, 3.28).p_value) << "no spread: no t";
}

// Repeats of one recipe (other run names and seeds) form one group; another
// recipe its own; a run stopped before its steps is named and left out, one
// stopped at its val_loss_target is not; --group puts every run in one group.
TEST(Compare, GroupsByConfigWithTheTTestAndLeavesOutUnfinishedRuns) {
  const fs::path dir = tests::scratch_dir("compare_groups");
  auto run = [&](const std::string& name, const std::vector<std::string>& sets, int64_t last_step, double final_loss) {
    std::vector<std::string> overrides = {"train.steps=20", "train.val_loss_target=0", "run.name=" + name};
    overrides.insert(overrides.end(), sets.begin(), sets.end());
    write_text(dir / name / "config.yaml", to_yaml(load_config({}, overrides)));
    write_text(dir / name / "metrics.jsonl",
               fmt::format("{{\"step\":0,\"val_loss\":10.8,\"train_time_ms\":0,\"step_avg_ms\":0}}\n"
                           "{{\"step\":{},\"val_loss\":{},\"train_time_ms\":{},\"step_avg_ms\":100}}\n",
                           last_step, final_loss, 100 * last_step));
    return (dir / name).string();
  };
  const std::vector<std::string> dirs = {
      run("a1", {"run.seed=1"}, 20, 3.270), run("b1", {"optim.muon.lr=0.03"}, 20, 3.300),
      run("a2", {"run.seed=2"}, 20, 3.275),  run("a3", {"run.seed=3"}, 20, 3.272),
      run("a4", {"run.seed=4"}, 12, 3.400),  // died at step 12
      run("b2", {"optim.muon.lr=0.03", "train.val_loss_target=3.31"}, 15, 3.305)};
  CompareOptions options{dirs, (dir / "out").string(), 3.28, std::nullopt};
  std::string table;
  try {
    table = compare_runs(options).table;
  } catch (const PlotError&) {
    table = tests::read_file(dir / "out" / "compare.md");
  }
  const TTest a = t_test_mean_below({3.270, 3.275, 3.272}, 3.28);
  const std::string a_row = fmt::format("| a1, a2, a3, a4 | 3 | {:.4f} | {:.4f} | 2.0 s (3 of 3 reached 3.28) | {:.3g} |",
                                        a.mean, a.stddev, *a.p_value);
  EXPECT_NE(table.find(a_row), std::string::npos) << a_row << "\n" << table;
  EXPECT_NE(table.find("| b1 | 1 | 3.3000 | - | not reached (0 of 1) | - |"), std::string::npos)
      << "b2 differs in its target: its own group\n" << table;
  EXPECT_NE(table.find("| b2 | 1 | 3.3050 | - | not reached (0 of 1) | - |"), std::string::npos)
      << "stopped at its target: counted\n" << table;
  EXPECT_NE(table.find("- a4 (config "), std::string::npos) << table;
  EXPECT_NE(table.find("): stopped at step 12 of 20"), std::string::npos) << table;
  EXPECT_NE(table.find("against 3.28 (one-sided t-test)"), std::string::npos) << table;

  options.group = "all";
  try {
    table = compare_runs(options).table;
  } catch (const PlotError&) {
    table = tests::read_file(dir / "out" / "compare.md");
  }
  const TTest all = t_test_mean_below({3.270, 3.300, 3.275, 3.272, 3.305}, 3.28);
  EXPECT_NE(table.find(fmt::format("| all | a1, b1, a2, a3, a4, b2 | 5 | {:.4f} |", all.mean)), std::string::npos)
      << table;
}

TEST(Compare, BadRecordsAndMissingFilesAreNamed) {
  const fs::path dir = two_runs("bad");
  write_text(dir / "b" / "metrics.jsonl", "{\"step\":0,\"val_loss\":4.0}\n{\"step\":10,\"val_loss\":3.5}\n{\"val_loss\":3\n");
  const std::string out = (dir / "out").string();
  std::string e = tests::error_of([&] { compare_runs({{(dir / "a").string(), (dir / "b").string()}, out, 3.0, std::nullopt}); });
  EXPECT_NE(e.find((dir / "b" / "metrics.jsonl").string() + " line 3"), std::string::npos) << e;
  write_text(dir / "b" / "metrics.jsonl", "{\"val_loss\":3}\n");
  e = tests::error_of([&] { compare_runs({{(dir / "b").string()}, out, 3.0, std::nullopt}); });
  EXPECT_NE(e.find("metrics.jsonl line 1: expected an object with a \"step\""), std::string::npos) << e;
  e = tests::error_of([&] { compare_runs({{(dir / "nothing").string()}, out, 3.0, std::nullopt}); });
  EXPECT_NE(e.find((dir / "nothing" / "metrics.jsonl").string() + ": no such file"), std::string::npos) << e;
}

TEST(Compare, RendersFourPngsWithGnuplot) {
  if (!have_gnuplot()) GTEST_SKIP() << "gnuplot is not installed (launch/setup.sh installs gnuplot-nox)";
  const fs::path dir = two_runs("png");
  compare_runs({{(dir / "a").string(), (dir / "b").string()}, (dir / "out").string(), 3.25, std::nullopt});
  for (const char* png : {"val_loss_by_step.png", "val_loss_by_time.png", "train_loss_by_step.png",
                          "train_loss_by_time.png"}) {
    EXPECT_TRUE(is_png(dir / "out" / png)) << png;
  }
  // Each run's validation curve against time, as gnuplot was given it.
  EXPECT_EQ(tests::read_file(dir / "out" / "data" / "compare_p1_s01.dat"), "0 4\n2 3.5\n4.1 3.1\n");
}

TEST(Compare, FailsClearlyWithoutGnuplotAfterWritingTheTable) {
  const fs::path dir = two_runs("no_gnuplot");
  const std::string saved = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", (dir / "empty").string().c_str(), 1);
  const std::string e = tests::error_of([&] { compare_runs({{(dir / "a").string()}, (dir / "out").string(), 3.25, std::nullopt}); });
  setenv("PATH", saved.c_str(), 1);
  EXPECT_NE(e.find("gnuplot not found: the PNGs are not rendered (install gnuplot-nox"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(dir / "out" / "compare.md"));
  EXPECT_TRUE(fs::exists(dir / "out" / "compare.gp"));
}
