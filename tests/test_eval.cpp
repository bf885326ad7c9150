// `muonrun eval`: the validation loss of a checkpoint equals the val_loss the
// training run logged for that step (metrics.jsonl), on one rank and on two
// under mpirun, and over other shards equals the model's loss on those
// tokens computed here batch by batch; HellaSwag endings are scored like the
// model's own loss on the concatenated tokens, with GPT-2 token ids from
// tiktoken; what is not a checkpoint or not a HellaSwag line is refused by
// name; progress is drawn on rank 0's terminal only.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <pty.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "models/gpt.h"
#include "tests/pattern_shards.h"
#include "tests/run_results.h"
#include "tests/test_helpers.h"
#include "tests/tiny_model.h"
#include "trainer/base/logging.h"
#include "trainer/base/progress.h"
#include "trainer/config/config.h"
#include "trainer/data/shard.h"
#include "trainer/io/checkpoint.h"
#include "trainer/run/train.h"
#include "trainer/tools/eval.h"
#include "trainer/tools/hellaswag.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

const std::string kVocabDir = std::string(MUONRUN_SHARED_DIR) + "/data/gpt2";
const char* kEnv = "OMP_WAIT_POLICY=PASSIVE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";

// 20 steps with validation and a checkpoint every 10; val_tokens 512 is four
// batches of 4 x 32 on one rank, two global batches on two.
std::vector<std::string> tiny_run(const fs::path& dir, int64_t vocab_size = 64) {
  return {"model.vocab_size=" + std::to_string(vocab_size), "model.layers=2", "model.heads=2", "model.head_dim=16",
          "model.dim=32", "model.seq_len=32", "train.micro_batch=4", "train.batch_tokens=256", "train.steps=20",
          "train.val_every=10", "train.val_tokens=512", "train.timing_warmup_steps=0", "train.val_loss_target=0",
          "checkpoint.every=10", "optim.adam.embed_lr=0.05", "optim.adam.head_lr=0.01", "optim.muon.lr=0.02",
          "data.train=" + (dir / "train_*.bin").string(), "data.val=" + (dir / "val_*.bin").string(),
          "run.dir=" + (dir / "run").string(), "run.log_level=warn"};
}

fs::path trained_run(const std::string& name, int64_t vocab_size = 64, std::vector<std::string> extra = {}) {
  const fs::path dir = tests::scratch_dir("eval_" + name);
  tests::write_pattern_shards(dir);
  auto overrides = tiny_run(dir, vocab_size);
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  run_training(load_config({}, overrides), {});
  return dir;
}

double logged_val_loss(const fs::path& run, int64_t step) {
  for (const auto& m : tests::read_metrics(run / "metrics.jsonl"))
    if (m.step == step && m.val_loss) return *m.val_loss;
  ADD_FAILURE() << "no val_loss at step " << step;
  return 0;
}

std::string checkpoint_of(const fs::path& run, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%06lld", static_cast<long long>(step));
  return (run / "checkpoints" / name).string();
}

// stdout of a command that must succeed.
std::string output_of(const std::string& command, const fs::path& out) {
  const std::string full = command + " > " + out.string() + " 2>&1";
  EXPECT_EQ(std::system(full.c_str()), 0) << full << "\n" << tests::read_file(out);
  return tests::read_file(out);
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(Eval, ValLossOfACheckpointIsWhatTrainingLoggedAtItsStep) {
  const fs::path dir = trained_run("logged");
  const fs::path run = dir / "run";
  for (int64_t step : {10, 20}) {
    EvalOptions options;
    options.checkpoint = checkpoint_of(run, step);
    const EvalResult result = run_evaluation(options);
    EXPECT_EQ(result.step, step);
    EXPECT_NEAR(result.val_loss, logged_val_loss(run, step), 1e-6) << "step " << step;
  }
  EvalOptions newest;
  newest.checkpoint = run.string();  // a run directory: its newest checkpoint
  EXPECT_EQ(run_evaluation(newest).step, 20);
}

// Other shards: the training shard, whose first 512 tokens are four batches
// of 4 x 32 (targets shifted by one) for the model loaded here.
TEST(Eval, OverOtherShardsItIsTheModelsMeanLossOnTheirFirstValTokens) {
  const fs::path dir = trained_run("shards");
  const std::string checkpoint = checkpoint_of(dir / "run", 20);
  EvalOptions options;
  options.checkpoint = checkpoint;
  options.overrides = {"data.val=" + (dir / "train_000000.bin").string()};
  const double eval_loss = run_evaluation(options).val_loss;

  GPT model(checkpoint_config(checkpoint).model);
  load_model_weights(checkpoint, *model);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto shard = read_shard((dir / "train_000000.bin").string());
  const auto tokens = torch::tensor(std::vector<int64_t>(shard.begin(), shard.begin() + 513), torch::kLong);
  double sum = 0;
  for (int64_t i = 0; i < 4; ++i) {
    const auto x = tokens.narrow(0, i * 128, 128).view({4, 32});
    const auto y = tokens.narrow(0, i * 128 + 1, 128).view({4, 32});
    sum += model->loss(x, y).item<double>();
  }
  EXPECT_NEAR(eval_loss, sum / 4, 1e-6);
  EXPECT_GT(std::abs(eval_loss - logged_val_loss(dir / "run", 20)), 1e-4) << "the override changed nothing";
}

// Two ranks each evaluate half of every global batch; the mean of their
// means is the same mean, up to float32 summation order (a few ulps of a
// loss near 2: under 1e-6).
TEST(Eval, TwoRanksUnderMpiGiveTheLoggedValLossAndPrintItOnce) {
  const fs::path dir = trained_run("mpi");
  const std::string out = output_of(std::string(kEnv) + "mpirun --oversubscribe --bind-to none -np 2 " +
                                        MUONRUN_BINARY + " eval --checkpoint " + checkpoint_of(dir / "run", 10),
                                    dir / "out.txt");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(out, match, std::regex("val_loss (\\S+) over 512 tokens .* on 2 rank"))) << out;
  EXPECT_NEAR(std::stod(match[1]), logged_val_loss(dir / "run", 10), 1e-6) << out;
  EXPECT_EQ(count_of(out, "val_loss"), 1u) << "only rank 0 prints:\n" << out;
}

TEST(Eval, TwoRanksUnderTorchrunGiveTheLoggedValLoss) {
  if (std::string(MUONRUN_TORCHRUN).empty()) GTEST_SKIP() << "no torchrun (configure with -DMUONRUN_PYTHON)";
  const fs::path dir = trained_run("torchrun");
  const std::string out = output_of(std::string(kEnv) + MUONRUN_TORCHRUN + " --standalone --nproc-per-node 2 --no-python " +
                                        MUONRUN_BINARY + " eval --checkpoint " + checkpoint_of(dir / "run", 20),
                                    dir / "out.txt");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(out, match, std::regex("val_loss (\\S+) over 512 tokens .* on 2 rank"))) << out;
  EXPECT_NEAR(std::stod(match[1]), logged_val_loss(dir / "run", 20), 1e-6) << out;
}

TEST(Eval, RefusesWhatIsNotACheckpointByName) {
  const fs::path dir = tests::scratch_dir("eval_bad");
  auto error_for = [](const fs::path& path, std::vector<std::string> overrides = {}) {
    EvalOptions options;
    options.checkpoint = path.string();
    options.overrides = std::move(overrides);
    return tests::error_of([&] { run_evaluation(options); });
  };
  std::string e = error_for(dir / "missing");
  EXPECT_NE(e.find((dir / "missing").string() + ": no such directory"), std::string::npos) << e;
  fs::create_directories(dir / "plain");
  e = error_for(dir / "plain");
  EXPECT_NE(e.find((dir / "plain").string() + ": not a complete checkpoint (no COMPLETE file"), std::string::npos) << e;
  fs::create_directories(dir / "run" / "checkpoints" / "step_000010.tmp");
  e = error_for(dir / "run");
  EXPECT_NE(e.find("the run has no complete checkpoint"), std::string::npos) << e;
}

TEST(Eval, RefusesWeightsOfAnotherModelNamingTheFile) {
  const fs::path dir = trained_run("other_model");
  const std::string checkpoint = checkpoint_of(dir / "run", 20);
  EvalOptions options;
  options.checkpoint = checkpoint;
  options.overrides = {"model.dim=64", "model.head_dim=32"};
  const std::string e = tests::error_of([&] { run_evaluation(options); });
  EXPECT_NE(e.find(checkpoint + "/model.safetensors: tensor"), std::string::npos) << e;
}

// --- HellaSwag ---------------------------------------------------------------

namespace {

// The example of the public file that llm.c's dev/data/hellaswag.py quotes.
const char* kRoofExample =
    R"({"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", )"
    R"("ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain", "label": 3, )"
    R"("endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", )"
    R"("is holding a rubik's cube.", "starts pulling up roofing on a roof."], "source_id": "activitynet~v_-JhWjGDPHMY"})";

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(kVocabDir + "/encoder.json", kVocabDir + "/vocab.bpe");
  return tokenizer;
}

// Examples whose text is made of words the tokenizer turns into a few tokens each.
std::string example_line(const std::string& ctx, const std::vector<std::string>& endings, int label) {
  std::string line = "{\"ctx\": \"" + ctx + "\", \"endings\": [";
  for (size_t i = 0; i < endings.size(); ++i) line += (i ? ", \"" : "\"") + endings[i] + "\"";
  return line + "], \"label\": " + std::to_string(label) + "}";
}

void write_lines(const fs::path& file, const std::vector<std::string>& lines) {
  std::ofstream out(file);
  for (const auto& l : lines) out << l << "\n";
}

// The summed loss of `ending` after `context`, from the model's own mean
// loss: causal attention gives the context's positions the same losses with
// or without the ending, so the ending's part is the difference of the
// summed losses of the whole row and of the context alone.
double reference_ending_loss(GPT& model, std::vector<int64_t> context, const std::vector<int64_t>& ending) {
  torch::NoGradGuard no_grad;
  const int64_t window = model->config.seq_len + 1;
  if (static_cast<int64_t>(context.size() + ending.size()) > window)
    context.erase(context.begin(), context.end() - (window - static_cast<int64_t>(ending.size())));
  auto row = context;
  row.insert(row.end(), ending.begin(), ending.end());
  auto summed = [&](const std::vector<int64_t>& r) {
    if (r.size() < 2) return 0.0;
    const auto t = torch::tensor(r, torch::kLong).view({1, -1});
    const int64_t n = t.size(1) - 1;
    return model->loss(t.narrow(1, 0, n), t.narrow(1, 1, n)).item<double>() * static_cast<double>(n);
  };
  return summed(row) - summed(context);
}

GPT random_gpt2_vocab_model(int64_t seq_len) {
  torch::manual_seed(7);
  GPT model(tests::tiny_model_config(2, 50257, seq_len));
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.3);  // the zero-initialised head too
  return model;
}

}  // namespace

TEST(Hellaswag, ReadsThePublicFormatWithGPT2Tokens) {
  const fs::path file = tests::scratch_dir("hellaswag_read") / "val.jsonl";
  write_lines(file, {kRoofExample, ""});
  const auto examples = read_hellaswag(file.string(), gpt2());
  ASSERT_EQ(examples.size(), 1u);
  // Ids from tiktoken's r50k_base (tests/reference/tiktoken_offline.py).
  EXPECT_EQ(examples[0].context, (std::vector<int64_t>{32, 582, 318, 5586, 319, 257, 9753, 13, 339}));
  EXPECT_EQ(examples[0].endings[0], (std::vector<int64_t>{318, 1262, 14441, 284, 14441, 257, 5166, 286, 1341, 271, 13}));
  EXPECT_EQ(examples[0].endings[3], (std::vector<int64_t>{4940, 10427, 510, 9753, 278, 319, 257, 9753, 13}));
  EXPECT_EQ(examples[0].label, 3);
  EXPECT_EQ(examples[0].line, 1);
}

TEST(Hellaswag, BadLinesAreRefusedNamingFileAndLine) {
  const fs::path file = tests::scratch_dir("hellaswag_bad") / "h.jsonl";
  const std::string good = example_line("a b", {"c", "d", "e", "f"}, 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"ctx\": \"a\", ", "invalid JSON"},
      {example_line("a b", {"c", "d", "e"}, 0), "\"endings\" is not an array of 4"},
      {example_line("a b", {"c", "d", "e", "f"}, 4), "\"label\" is not an integer 0..3"},
      {R"({"ctx": "a b", "endings": ["c", "d", "e", "f"]})", "no \"label\" (the test split has none"},
      {R"({"ctx": 3, "endings": ["c", "d", "e", "f"], "label": 1})", "no string \"ctx\""},
      {R"({"ctx": "a", "endings": ["c", 5, "e", "f"], "label": 1})", "ending 1 is not a string"},
  };
  for (const auto& [line, why] : cases) {
    write_lines(file, {good, line});
    const std::string e = tests::error_of([&] { read_hellaswag(file.string(), gpt2()); });
    EXPECT_NE(e.find(file.string() + " line 2"), std::string::npos) << line << "\n" << e;
    EXPECT_NE(e.find(why), std::string::npos) << line << "\n" << e;
  }
}

TEST(Hellaswag, PicksTheLeastTotalAndTheLeastMeanLoss) {
  // Totals 10, 6, 9, 8 over 5, 2, 3, 8 tokens: means 2, 3, 3, 1.
  EndingPick pick = pick_ending({EndingLoss{10, 5}, {6, 2}, {9, 3}, {8, 8}});
  EXPECT_EQ(pick.by_total, 1);
  EXPECT_EQ(pick.by_mean, 3);
  // Ties go to the first, as torch.argmin.
  pick = pick_ending({EndingLoss{4, 2}, {3, 1}, {3, 1}, {6, 2}});
  EXPECT_EQ(pick.by_total, 1);
  EXPECT_EQ(pick.by_mean, 0);
}

TEST(Hellaswag, EndingLossesAreTheModelsOwnLossOnTheConcatenatedTokens) {
  GPT model = random_gpt2_vocab_model(/*seq_len=*/16);
  model->eval();
  const fs::path file = tests::scratch_dir("hellaswag_losses") / "h.jsonl";
  // The roof example fits in 16 + 1 tokens only with its context cropped.
  write_lines(file, {kRoofExample, example_line("The cat sat on the", {"mat.", "moon and the stars", "dog", "a"}, 0)});
  for (const auto& example : read_hellaswag(file.string(), gpt2())) {
    const auto losses = score_endings(*model, model->config.seq_len, example);
    for (size_t i = 0; i < 4; ++i) {
      const double reference = reference_ending_loss(model, example.context, example.endings[i]);
      EXPECT_NEAR(losses[i].total, reference, 1e-5 * std::abs(reference) + 1e-4) << "line " << example.line << " ending " << i;
      EXPECT_EQ(losses[i].tokens, static_cast<int64_t>(example.endings[i].size()));
    }
  }
}

// A checkpoint's accuracy on a small file, on one rank and on two, against
// the picks made here from reference_ending_loss.
TEST(Hellaswag, AccuracyOfACheckpointOnOneAndTwoRanks) {
  // GPT-2's vocabulary makes every step dear: 4 steps, validated at the end only.
  const fs::path dir = trained_run("hellaswag", /*vocab_size=*/50257, {"train.steps=4", "train.val_every=0"});
  const fs::path file = dir / "h.jsonl";
  write_lines(file, {kRoofExample,
                     example_line("The cat sat on the", {"mat.", "moon and the stars", "dog", "a"}, 0),
                     example_line("She opened the door and", {"walked in.", "sang", "the the the", "left"}, 1),
                     example_line("He poured the water into a", {"glass", "cup of tea", "sky", "bucket of sand"}, 2),
                     example_line("They drove the car to the", {"shop", "store near home", "beach", "city"}, 3)});
  const std::string checkpoint = checkpoint_of(dir / "run", 4);
  EvalOptions options;
  options.checkpoint = checkpoint;
  options.hellaswag = file.string();
  options.vocab_dir = kVocabDir;
  const EvalResult result = run_evaluation(options);
  ASSERT_TRUE(result.hellaswag);

  GPT model(checkpoint_config(checkpoint).model);
  load_model_weights(checkpoint, *model);
  model->eval();
  int64_t correct = 0, correct_norm = 0;
  for (const auto& example : read_hellaswag(file.string(), gpt2())) {
    double best_total = 1e300, best_mean = 1e300;
    int by_total = -1, by_mean = -1;
    for (int i = 0; i < 4; ++i) {
      const double total = reference_ending_loss(model, example.context, example.endings[i]);
      const double mean = total / static_cast<double>(example.endings[i].size());
      if (total < best_total) best_total = total, by_total = i;
      if (mean < best_mean) best_mean = mean, by_mean = i;
    }
    correct += by_total == example.label;
    correct_norm += by_mean == example.label;
  }
  EXPECT_EQ(result.hellaswag->examples, 5);
  EXPECT_EQ(result.hellaswag->correct, correct);
  EXPECT_EQ(result.hellaswag->correct_norm, correct_norm);

  const std::string out = output_of(std::string(kEnv) + "mpirun --oversubscribe --bind-to none -np 2 " +
                                        MUONRUN_BINARY + " eval --checkpoint " + checkpoint + " --hellaswag " +
                                        file.string() + " --vocab " + kVocabDir,
                                    dir / "out.txt");
  const std::string expected = "(" + std::to_string(correct_norm) + " and " + std::to_string(correct) +
                               " right of 5 examples)";
  EXPECT_NE(out.find(expected), std::string::npos) << expected << "\n" << out;
}

// --- Console -------------------------------------------------------------------

namespace {

// What a Progress of this rank draws on a terminal: stdout is a pseudo-terminal meanwhile.
std::string drawn_by_rank(int rank) {
  int master = -1, slave = -1;
  if (openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) return "openpty failed";
  std::fflush(stdout);
  const int saved = dup(STDOUT_FILENO);
  dup2(slave, STDOUT_FILENO);
  init_console_logging(spdlog::level::info, rank);
  {
    Progress progress("counting", 10, "items", 10.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // past the terminal's redraw interval
    progress.update(5);
    progress.finish();
  }
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  close(slave);
  fcntl(master, F_SETFL, O_NONBLOCK);
  std::string drawn;
  char buf[512];
  for (ssize_t n; (n = read(master, buf, sizeof buf)) > 0;) drawn.append(buf, n);
  close(master);
  init_console_logging(spdlog::level::info);
  return drawn;
}

}  // namespace

TEST(Console, ProgressIsDrawnOnRankZerosTerminalOnly) {
  EXPECT_NE(drawn_by_rank(0).find("counting:"), std::string::npos);
  EXPECT_EQ(drawn_by_rank(1), "");
}
