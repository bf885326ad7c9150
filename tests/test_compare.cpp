// `muonrun compare`: the table's numbers for two hand-written metrics.jsonl
// files against values worked out by hand here, the target taken from the
// runs' config.yaml, a bad record named by file and line, the PNGs gnuplot
// renders, and a clear failure without gnuplot.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/test_helpers.h"
#include "trainer/config/config.h"
#include "trainer/tools/compare.h"
#include "trainer/tools/plots.h"

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
  CompareOptions options{{(dir / "a").string(), (dir / "b/").string()}, (dir / "out").string(), 3.25};
  Comparison c;
  try {
    c = compare_runs(options);
  } catch (const PlotError&) {  // no gnuplot: the table is written all the same
  }
  const std::string table = tests::read_file(dir / "out" / "compare.md");
  EXPECT_EQ(table,
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
  const CompareOptions options{{(dir / "a").string(), (dir / "b").string()}, (dir / "out").string(), std::nullopt};
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

TEST(Compare, BadRecordsAndMissingFilesAreNamed) {
  const fs::path dir = two_runs("bad");
  write_text(dir / "b" / "metrics.jsonl", "{\"step\":0,\"val_loss\":4.0}\n{\"step\":10,\"val_loss\":3.5}\n{\"val_loss\":3\n");
  const std::string out = (dir / "out").string();
  std::string e = tests::error_of([&] { compare_runs({{(dir / "a").string(), (dir / "b").string()}, out, 3.0}); });
  EXPECT_NE(e.find((dir / "b" / "metrics.jsonl").string() + " line 3"), std::string::npos) << e;
  write_text(dir / "b" / "metrics.jsonl", "{\"val_loss\":3}\n");
  e = tests::error_of([&] { compare_runs({{(dir / "b").string()}, out, 3.0}); });
  EXPECT_NE(e.find("metrics.jsonl line 1: expected an object with a \"step\""), std::string::npos) << e;
  e = tests::error_of([&] { compare_runs({{(dir / "nothing").string()}, out, 3.0}); });
  EXPECT_NE(e.find((dir / "nothing" / "metrics.jsonl").string() + ": no such file"), std::string::npos) << e;
}

TEST(Compare, RendersFourPngsWithGnuplot) {
  if (!have_gnuplot()) GTEST_SKIP() << "gnuplot is not installed (launch/setup.sh installs gnuplot-nox)";
  const fs::path dir = two_runs("png");
  compare_runs({{(dir / "a").string(), (dir / "b").string()}, (dir / "out").string(), 3.25});
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
  const std::string e = tests::error_of([&] { compare_runs({{(dir / "a").string()}, (dir / "out").string(), 3.25}); });
  setenv("PATH", saved.c_str(), 1);
  EXPECT_NE(e.find("gnuplot not found: the PNGs are not rendered (install gnuplot-nox"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(dir / "out" / "compare.md"));
  EXPECT_TRUE(fs::exists(dir / "out" / "compare.gp"));
}
