// Runs that fail: divergence policies, checkpoint retention, crashes during
// checkpoint writes, preemption by signals with exact resume, and ranks that
// die or hang (under mpirun and the real torchrun), and the diagnoses the
// survivors make of the others.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "models/gpt.h"
#include "tests/pattern_shards.h"
#include "tests/rank_beat.h"
#include "tests/run_results.h"
#include "tests/test_helpers.h"
#include "trainer/io/checkpoint.h"
#include "trainer/faults/divergence.h"
#include "trainer/faults/heartbeat.h"
#include "trainer/base/exit_codes.h"
#include "trainer/run/train.h"

extern char** environ;

using namespace muonrun;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

const std::vector<std::string> kTiny = {
    "model.vocab_size=64", "model.layers=2", "model.heads=2", "model.head_dim=8", "model.dim=16",
    "model.seq_len=16", "train.micro_batch=2", "train.batch_tokens=64", "train.val_every=0",
    "train.val_tokens=64", "train.val_loss_target=0", "train.timing_warmup_steps=0",
    "optim.adam.embed_lr=0.05", "optim.adam.head_lr=0.01", "optim.muon.lr=0.02", "run.log_level=warn"};

// The tiny config, data in `dir`, the run in dir/<run>.
std::vector<std::string> tiny_overrides(const fs::path& dir, const std::vector<std::string>& extra,
                                        const std::string& run = "run") {
  auto out = kTiny;
  out.push_back("data.train=" + (dir / "train_*.bin").string());
  out.push_back("data.val=" + (dir / "val_*.bin").string());
  out.insert(out.end(), extra.begin(), extra.end());
  out.push_back("run.dir=" + (dir / run).string());
  return out;
}

// Three ranks need a global batch divisible by 3 x micro_batch x seq_len.
const std::vector<std::string> kThreeRanks = {"train.micro_batch=1", "train.batch_tokens=96", "train.val_tokens=96"};

std::string as_set_args(const std::vector<std::string>& overrides) {
  std::string args;
  for (const auto& s : overrides) args += " --set " + s;
  return args;
}

fs::path prepared_dir(const std::string& name) {
  auto dir = tests::scratch_dir("reliability_" + name);
  tests::write_pattern_shards(dir);
  return dir;
}

// A shell command started in the background, in its own process group.
struct Background {
  pid_t pid;
  explicit Background(const std::string& command) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    if (posix_spawn(&pid, "/bin/sh", nullptr, &attr, const_cast<char**>(argv), environ) != 0)
      throw std::runtime_error("cannot start " + command);
    posix_spawnattr_destroy(&attr);
  }
  // The exit code, or -1 if it did not end within `timeout` (then killed).
  int wait(std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    while (Clock::now() < deadline) {
      if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
};

using tests::read_beat;

// Waits until rank 0 has logged `step` in metrics.jsonl (one flushed line
// per step); false on timeout. Unlike the rank files, which the heartbeat
// rewrites once a second, it follows a run whose steps take a millisecond
// (a tiny model on an idle machine: 300 steps in under half a second).
bool wait_for_logged_step(const fs::path& run_dir, long long step, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::ifstream in(run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find("\"step\":");
      if (!line.empty() && line.back() == '}' && at != std::string::npos && std::stoll(line.substr(at + 7)) >= step)
        return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Waits until every rank has finished `step`; false on timeout.
bool wait_for_step(const fs::path& run_dir, int ranks, long long step, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool all = true;
    for (int r = 0; r < ranks; ++r) all = all && read_beat(run_dir, r).step >= step;
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

const std::string kEnv = "OMP_WAIT_POLICY=PASSIVE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";

}  // namespace

// --- divergence -------------------------------------------------------------
// Every exit code of the README's table, command line included: CLI11's own
// codes (105, 109, ...) would tell a job script nothing.
TEST(ExitCodes, BadCommandLinesExitWithTheErrorCode) {
  const std::string binary = MUONRUN_BINARY;
  for (const std::string args : {"train --bogus", "train -c /nonexistent.yaml", "sample --checkpoint /nonexistent",
                                 "frobnicate"}) {
    EXPECT_EQ(Background(binary + " " + args + " 2>/dev/null").wait(std::chrono::seconds(30)), kExitError) << args;
  }
  EXPECT_EQ(Background(binary + " --help >/dev/null").wait(std::chrono::seconds(30)), kExitOk);
}

TEST(Divergence, SpikeZScoreMatchesItsDefinition) {
  DivergenceDetector detector(3.0, 16);
  // Alternating 1 and 3: mean 2, population std 1.
  for (int i = 0; i < 16; ++i) EXPECT_EQ(detector.check(i % 2 ? 3.0 : 1.0, true), "");
  EXPECT_EQ(detector.check(4.9, true), "");  // z = 2.9
  DivergenceDetector fresh(3.0, 16);
  for (int i = 0; i < 16; ++i) fresh.check(i % 2 ? 3.0 : 1.0, true);
  EXPECT_NE(fresh.check(5.1, true).find("z-score 3.1"), std::string::npos);  // z = 3.1
  EXPECT_NE(fresh.check(std::nan(""), true).find("nan"), std::string::npos);
  EXPECT_NE(fresh.check(1.0, false).find("NaN or Inf"), std::string::npos);
}

TEST(Divergence, InjectedNaNIsSkipped) {
  auto dir = prepared_dir("skip");
  auto config = load_config({}, tiny_overrides(dir, {"train.steps=12", "train.on_divergence=skip",
                                                     "debug.inject_nan_step=5"}));
  auto summary = run_training(config, {});
  EXPECT_EQ(summary.steps, 12);
  EXPECT_EQ(summary.skipped_steps, 1);
  auto metrics = tests::read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(metrics[5].step, 6);  // no validation at step 0: the first line is step 1
  ASSERT_TRUE(metrics[5].train_loss.has_value());
  EXPECT_TRUE(std::isnan(*metrics[5].train_loss)) << "step 6 carries the NaN";
  for (const auto& [name, t] : tests::final_weights(dir / "run").tensors)
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
}

TEST(Divergence, InjectedNaNRollsBackWithALowerLearningRate) {
  auto dir = prepared_dir("rollback");
  auto config = load_config({}, tiny_overrides(dir, {"train.steps=12", "train.on_divergence=rollback",
                                                     "checkpoint.every=4", "checkpoint.keep_last=5",
                                                     "debug.inject_nan_step=6"}));
  auto summary = run_training(config, {});
  EXPECT_EQ(summary.steps, 12);
  auto metrics = tests::read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 12u);  // steps 1..12, the replayed ones written once
  for (const auto& m : metrics) {
    if (m.train_loss) {
      EXPECT_TRUE(std::isfinite(*m.train_loss)) << "step " << m.step;
    }
  }
  auto file = load_safetensors((dir / "run/checkpoints/step_000012/rank0.safetensors").string());
  EXPECT_EQ(file.metadata.at("lr_scale"), "0.5");
  EXPECT_EQ(file.metadata.at("rollbacks"), "1");
}

TEST(Divergence, InjectedNaNStopsWithAReportAndKeepsTheCheckpoint) {
  auto dir = prepared_dir("stop");
  auto config = load_config({}, tiny_overrides(dir, {"train.steps=12", "train.on_divergence=stop",
                                                     "checkpoint.every=4", "debug.inject_nan_step=6"}));
  try {
    run_training(config, {});
    FAIL() << "a NaN did not stop the run";
  } catch (const TrainingStopped& e) {
    EXPECT_EQ(e.exit_code, kExitDiverged);
    const std::string what = e.what();
    EXPECT_NE(what.find("step 7: the loss is nan"), std::string::npos) << what;
    EXPECT_NE(what.find("step_000004"), std::string::npos) << what;
  }
  EXPECT_EQ(*find_latest_checkpoint((dir / "run").string()), (dir / "run/checkpoints/step_000004").string());
}

// --- checkpoints ------------------------------------------------------------
TEST(Checkpoints, KeepTheLastKAndEveryMth) {
  auto dir = prepared_dir("retention");
  auto config = load_config({}, tiny_overrides(dir, {"train.steps=10", "checkpoint.every=1",
                                                     "checkpoint.keep_last=2", "checkpoint.keep_every=4"}));
  run_training(config, {});
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(dir / "run" / "checkpoints")) kept.push_back(e.path().filename());
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<std::string>{"step_000004", "step_000008", "step_000009", "step_000010"}));
}

TEST(Checkpoints, IncompleteCheckpointsAreIgnored) {
  auto dir = prepared_dir("incomplete");
  auto config = load_config({}, tiny_overrides(dir, {"train.steps=4", "checkpoint.every=2"}));
  run_training(config, {});
  const fs::path root = dir / "run" / "checkpoints";
  // What a crash leaves: a half-assembled directory and one without its marker.
  fs::create_directories(root / "step_000006.tmp");
  fs::copy(root / "step_000004", root / "step_000005", fs::copy_options::recursive);
  fs::remove(root / "step_000005" / "COMPLETE");
  EXPECT_EQ(*find_latest_checkpoint((dir / "run").string()), (root / "step_000004").string());
}

TEST(Checkpoints, KillingTheJobDuringWritesNeverCorruptsTheLastCheckpoint) {
  auto dir = prepared_dir("kill_during_write");
  // A model large enough that writing takes a visible share of each step.
  auto overrides = tiny_overrides(dir, {"train.steps=100000", "checkpoint.every=1", "checkpoint.keep_last=2",
                                        "model.dim=128", "model.heads=4", "model.head_dim=32"});
  const auto config = load_config({}, overrides);
  const std::string command = kEnv + MUONRUN_BINARY + " train" + as_set_args(overrides) + " > /dev/null 2>&1";
  for (int attempt = 0; attempt < 4; ++attempt) {
    fs::remove(dir / "run" / "ranks" / "rank0");  // wait for this attempt's own progress
    Background job(command + (attempt > 0 ? " --resume" : ""));
    ASSERT_TRUE(wait_for_step(dir / "run", 1, 2 + attempt * 2, std::chrono::seconds(60)));
    std::this_thread::sleep_for(std::chrono::milliseconds(37 * (attempt + 1)));  // land somewhere in a write
    kill(-job.pid, SIGKILL);
    job.wait(std::chrono::seconds(10));
    auto latest = find_latest_checkpoint((dir / "run").string());
    ASSERT_TRUE(latest) << "attempt " << attempt;
    GPT model(config.model);
    Optimizer optimizer(*model, config, nullptr);
    EXPECT_NO_THROW(load_checkpoint(*latest, *model, optimizer)) << *latest;
  }
}

// --- preemption -------------------------------------------------------------
class Preemption : public ::testing::TestWithParam<int> {};

TEST_P(Preemption, SigtermThenResumeEqualsAnUninterruptedRun) {
  const int ranks = GetParam();
  auto dir = prepared_dir("sigterm_" + std::to_string(ranks));
  const auto uninterrupted = tiny_overrides(dir, {"train.steps=300", "train.val_every=100"});
  const auto preempted = tiny_overrides(dir, {"train.steps=300", "train.val_every=100"}, "preempted");
  const std::string launcher = ranks == 1 ? "" : "mpirun --oversubscribe --bind-to none -np " + std::to_string(ranks) + " ";
  const std::string base = kEnv + launcher + MUONRUN_BINARY + " train";
  ASSERT_EQ(std::system((base + as_set_args(uninterrupted) + " > /dev/null 2>&1").c_str()), 0);

  Background job(base + as_set_args(preempted) + " > " + (dir / "out.txt").string() + " 2>&1");
  ASSERT_TRUE(wait_for_logged_step(dir / "preempted", 20, std::chrono::seconds(60)));
  for (int r = 0; r < ranks; ++r) kill(read_beat(dir / "preempted", r).pid, SIGTERM);  // as Slurm does
  const int code = job.wait(std::chrono::seconds(60));
  EXPECT_NE(code, -1) << "the run did not stop after SIGTERM";
  if (ranks == 1) {
    EXPECT_EQ(code, kExitStoppedBySignal) << tests::read_file(dir / "out.txt");
  }
  auto stopped = find_latest_checkpoint((dir / "preempted").string());
  ASSERT_TRUE(stopped);
  EXPECT_LT(read_beat(dir / "preempted", 0).step, 300);

  ASSERT_EQ(std::system((base + as_set_args(preempted) + " --resume > /dev/null 2>&1").c_str()), 0);
  auto a = tests::read_metrics(dir / "run" / "metrics.jsonl");
  auto b = tests::read_metrics(dir / "preempted" / "metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].train_loss, b[i].train_loss) << "step " << a[i].step;
    EXPECT_EQ(a[i].val_loss, b[i].val_loss) << "step " << a[i].step;
  }
  auto wa = tests::final_weights(dir / "run"), wb = tests::final_weights(dir / "preempted");
  for (const auto& [name, t] : wa.tensors) EXPECT_TRUE(torch::equal(t, wb.tensors.at(name))) << name;
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, Preemption, ::testing::Values(1, 2));

// --- rank failures ----------------------------------------------------------
TEST(RankFailure, AHungRankIsNamedAndTheJobEndsWithinTheTimeout) {
  auto dir = prepared_dir("hang_mpi");
  auto overrides = tiny_overrides(dir, {"train.steps=100000", "comm.timeout_s=5"});
  overrides.insert(overrides.end() - 1, kThreeRanks.begin(), kThreeRanks.end());
  Background job(kEnv + "mpirun --oversubscribe --bind-to none -np 3 " + MUONRUN_BINARY + " train" +
                 as_set_args(overrides) + " > " + (dir / "out.txt").string() + " 2>&1");
  ASSERT_TRUE(wait_for_step(dir / "run", 3, 3, std::chrono::seconds(60)));
  const auto start = Clock::now();
  kill(read_beat(dir / "run", 1).pid, SIGSTOP);  // rank 1 stops responding
  const int code = job.wait(std::chrono::seconds(60));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(code, -1) << "the job hung";
  EXPECT_NE(code, 0);
  EXPECT_LT(seconds, 30);
  const std::string log = tests::read_file(dir / "out.txt") + tests::read_file(dir / "run" / "log_rank0.txt") +
                          tests::read_file(dir / "run" / "log_rank2.txt");
  EXPECT_NE(log.find("did not complete within 5 s"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 (pid"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped responding"), std::string::npos) << log;
}

TEST(RankFailure, AKilledRankEndsTheTorchrunJob) {
  if (std::string(MUONRUN_TORCHRUN).empty()) GTEST_SKIP() << "no torchrun (configure with -DMUONRUN_PYTHON)";
  auto dir = prepared_dir("kill_gloo");
  auto overrides = tiny_overrides(dir, {"train.steps=100000", "comm.timeout_s=10"});
  overrides.insert(overrides.end() - 1, kThreeRanks.begin(), kThreeRanks.end());
  Background job(kEnv + MUONRUN_TORCHRUN + " --standalone --nproc-per-node 3 --no-python " + MUONRUN_BINARY +
                 " train" + as_set_args(overrides) + " > " + (dir / "out.txt").string() + " 2>&1");
  ASSERT_TRUE(wait_for_step(dir / "run", 3, 3, std::chrono::seconds(60)));
  const auto start = Clock::now();
  kill(read_beat(dir / "run", 1).pid, SIGKILL);
  const int code = job.wait(std::chrono::seconds(60));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(code, -1) << "the survivors hung";
  EXPECT_NE(code, 0);
  EXPECT_LT(seconds, 30);
  const std::string log = tests::read_file(dir / "out.txt") + tests::read_file(dir / "run" / "log_rank0.txt");
  EXPECT_NE(log.find("rank 1 (pid"), std::string::npos) << log;
  EXPECT_NE(log.find("has died"), std::string::npos) << log;
}

// --- diagnoses (trainer/faults/heartbeat.h) ---------------------------------
// Two heartbeats in this process stand for two ranks; rank 0 asks rank 1
// over TCP what it is doing. Each case is what a survivor sees after a
// collective fails.
namespace {

struct TwoRanks {
  fs::path dir = tests::scratch_dir("heartbeat");
  std::unique_ptr<Heartbeat> zero = std::make_unique<Heartbeat>(dir.string(), 0);
  std::unique_ptr<Heartbeat> one = std::make_unique<Heartbeat>(dir.string(), 1);
  TwoRanks() {
    auto endpoints = zero->endpoint();
    const auto other = one->endpoint();
    endpoints.insert(endpoints.end(), other.begin(), other.end());
    zero->set_peers(endpoints);
  }
};

}  // namespace

TEST(Diagnosis, ARankWhoseLoopMovesIsNotBlamed) {
  TwoRanks ranks;
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    for (int64_t step = 1; !stop; ++step) {
      ranks.one->beat(step);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const std::string report = ranks.zero->diagnose();
  stop = true;
  loop.join();
  EXPECT_NE(report.find("every other rank answers and is training"), std::string::npos) << report;
}

TEST(Diagnosis, ARankWhoseLoopStoppedIsReportedHungWithItsLastStep) {
  TwoRanks ranks;
  ranks.one->beat(41);
  ranks.one->beat(42);  // then its loop stops; its publishing thread lives on
  const std::string report = ranks.zero->diagnose();
  EXPECT_NE(report.find("rank 1 (pid " + std::to_string(getpid())), std::string::npos) << report;
  EXPECT_NE(report.find("is hung: it answers, but its training loop has not moved for "), std::string::npos) << report;
  EXPECT_NE(report.find(" s, after step 42"), std::string::npos) << report;
}

TEST(Diagnosis, ARankWhoseProcessIsGoneIsReportedDead) {
  TwoRanks ranks;
  ranks.one.reset();  // its port closes, as when the process dies
  const std::string report = ranks.zero->diagnose();
  EXPECT_NE(report.find("rank 1 (pid " + std::to_string(getpid())), std::string::npos) << report;
  EXPECT_NE(report.find("has died: its host answers but the process is gone"), std::string::npos) << report;
}
// An unreachable host (a network problem) is tested across two network
// namespaces with a cut link: tests/multinode/test_multinode.cpp.
