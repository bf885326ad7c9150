// Records 29's and 50's recipes from YAML, end to end on the CPU
// (model.recipe: record29 / record50; configs/record29*.yaml,
// configs/record50*.yaml): `muonrun train` builds the record-29 network, feeds
// it packed documents with their offsets, moves the attention windows by the
// record's schedule, and resumes bit for bit (the document loader's position
// included); the logits that sampling and HellaSwag read agree with the loss
// the model trains on; config mistakes are refused naming their key. Record
// 50's network and optimizers (Adam every other step, whose half-summed
// gradient a checkpoint keeps) resume bit for bit too.
#include <gtest/gtest.h>
#include <spdlog/fmt/fmt.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "models/record29.h"
#include "models/record50.h"
#include "trainer/base/config_error.h"
#include "trainer/config/config.h"
#include "trainer/data/shard.h"
#include "trainer/io/checkpoint.h"
#include "trainer/io/safetensors.h"
#include "trainer/run/train.h"
#include "trainer/run/train_step.h"
#include "tests/pattern_shards.h"
#include "tests/run_results.h"
#include "tests/test_helpers.h"

using namespace muonrun;
using muonrun::tests::read_metrics;
namespace fs = std::filesystem;

namespace {

// Every record-29 feature at a small size: value embeddings (a table used
// twice, a layer without), long and short windows and a layer without
// attention, the window schedule, the FP8 head, the record's Adam; two
// micro-steps of one 256-token packed sequence.
std::vector<std::string> tiny_record29(const fs::path& dir) {
  return {"model.recipe=record29", "model.vocab_size=50257", "model.layers=4", "model.heads=2",
          "model.head_dim=16", "model.dim=32", "model.seq_len=256", "model.windows=L S - L",
          "model.value_embeds=0 1 - 0", "model.window_schedule=1 2 4", "model.window_block=16",
          "model.fp8_head=true", "data.max_doc_tokens=64", "train.micro_batch=1", "train.batch_tokens=512",
          "train.steps=24", "train.val_every=12", "train.val_tokens=1024", "train.val_seq_len=512",
          "train.timing_warmup_steps=0", "train.val_loss_target=0", "optim.adam.embed_lr=0.05",
          "optim.adam.head_lr=0.01", "optim.adam.scalar_lr=0.02", "optim.adam.beta1=0.8",
          "optim.adam.eps=1e-10", "optim.adam.eps_before_bias_correction=true", "optim.muon.lr=0.02",
          "data.train=" + (dir / "train_*.bin").string(), "data.val=" + (dir / "val_*.bin").string(),
          "run.dir=" + (dir / "run").string(), "run.log_level=warn", "run.device=cpu"};
}

fs::path document_dir(const std::string& name) {
  auto dir = tests::scratch_dir("record29_train_" + name);
  tests::write_document_shards(dir);
  return dir;
}

// Drops the run's checkpoints after step `from` (all of them but the ones
// up to `from`; by default the last, of step `last`), resumes, and expects
// the metrics and final weights of the uninterrupted run.
void expect_resume_repeats_the_run(const fs::path& dir, const Config& config, int64_t last, int64_t from = -1) {
  const auto straight = read_metrics(dir / "run" / "metrics.jsonl");
  const auto final_path = dir / "run" / "checkpoints" / fmt::format("step_{:06d}", last) / "model.safetensors";
  const auto final_weights = load_safetensors(final_path.string());
  for (int64_t step = from < 0 ? last : from + 1; step <= last; ++step)
    fs::remove_all(dir / "run" / "checkpoints" / fmt::format("step_{:06d}", step));
  TrainOptions resume;
  resume.resume = true;
  run_training(config, resume);
  const auto resumed = read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(resumed.size(), straight.size());
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].train_loss, straight[i].train_loss) << "step " << resumed[i].step;
    EXPECT_EQ(resumed[i].val_loss, straight[i].val_loss) << "step " << resumed[i].step;
  }
  ASSERT_TRUE(fs::exists(final_path)) << "the resumed run did not finish";
  const auto weights = load_safetensors(final_path.string());
  for (const auto& [name, t] : final_weights.tensors) EXPECT_TRUE(torch::equal(t, weights.tensors.at(name))) << name;
}

std::string config_error(const std::vector<std::string>& overrides) {
  try {
    run_training(load_config({}, overrides), {});
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

}  // namespace

TEST(Record29Train, LossFallsAndResumesBitForBit) {
  const auto dir = document_dir("resume");
  auto overrides = tiny_record29(dir);
  overrides.push_back("checkpoint.every=12");
  overrides.push_back("checkpoint.keep_last=5");
  const Config config = load_config({}, overrides);
  const auto summary = run_training(config, {});
  EXPECT_EQ(summary.steps, 24);
  const auto straight = read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(straight.size(), 25u);
  ASSERT_TRUE(straight.front().val_loss && straight.back().val_loss);
  EXPECT_NEAR(*straight.front().val_loss, std::log(50304.0), 1e-3);  // zero head: uniform over the padded vocabulary
  EXPECT_LT(*straight.back().val_loss, *straight.front().val_loss - 3.0);
  for (const auto& m : straight) {
    if (m.train_loss) {
      EXPECT_TRUE(std::isfinite(*m.train_loss)) << "step " << m.step;
    }
  }
  const auto final_weights = load_safetensors((dir / "run/checkpoints/step_000024/model.safetensors").string());
  EXPECT_EQ(final_weights.tensors.count("blocks.0.attn.qkvo_w"), 1u) << "the record's state_dict names";
  EXPECT_EQ(final_weights.tensors.count("blocks.2.attn.qkvo_w"), 0u) << "layer 2 has no attention";

  // The run dies after the checkpoint of step 12: resumed, it must repeat
  // steps 13..24 exactly, which needs the loader at the same document.
  expect_resume_repeats_the_run(dir, config, 24);
}

// NorMuon's buffers and the cautious decay (optim.muon.normuon,
// cautious_weight_decay, records 41-50) through checkpoints: a run resumed at
// step 4 repeats steps 5..8 exactly.
TEST(Record29Train, NorMuonStateResumesBitForBit) {
  const auto dir = document_dir("normuon");
  auto overrides = tiny_record29(dir);
  for (const char* o : {"train.steps=8", "train.val_every=4", "checkpoint.every=4", "checkpoint.keep_last=5",
                        "optim.muon.normuon=true", "optim.muon.cautious_weight_decay=true",
                        "optim.muon.weight_decay=0.5"})
    overrides.push_back(o);
  const Config config = load_config({}, overrides);
  run_training(config, {});
  const auto state = load_safetensors((dir / "run/checkpoints/step_000004/rank0.safetensors").string());
  EXPECT_EQ(state.tensors.count("muon.second_moment.blocks.0.attn.qkvo_w"), 1u) << "NorMuon's buffer is saved";
  expect_resume_repeats_the_run(dir, config, 8);
}

// The logits sampling and HellaSwag read (document_logits: 30 sigmoid(z/7.5))
// give, through PyTorch's cross-entropy, the model's own evaluation loss over
// the same tokens as one document: the soft-cap shift changes no loss.
TEST(Record29Train, DocumentLogitsGiveTheEvaluationLoss) {
  const Config config = load_config({}, tiny_record29(document_dir("logits")));
  torch::manual_seed(3);
  Record29 model(record29_config(config.model));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0, 0.2);  // the zero-initialised head and projections too
  }
  model->eval();
  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(50257, {97}, torch::kLong);
  const auto inputs = tokens.narrow(0, 0, 96), targets = tokens.narrow(0, 1, 96);
  const auto logits = model->document_logits(inputs);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{96, 50304}));
  EXPECT_GE(logits.min().item<double>(), 0.0);
  EXPECT_LE(logits.max().item<double>(), 30.0);
  const double from_logits = torch::nn::functional::cross_entropy(logits, targets).item<double>();
  TokenBatch batch{inputs, targets, torch::tensor({0, 96}, torch::kInt)};
  const Loss loss = model->loss(batch);
  EXPECT_EQ(loss.per_token, 1.0) << "evaluation mode: the objective is the mean";
  EXPECT_NEAR(loss.objective.item<double>(), from_logits, 1e-5 * from_logits);
}

// get_ws of the record (train_gpt.py): x = step / (1 + num_iterations),
// ws = ws_schedule[int(len(ws_schedule) * x)], long = ws x block_size,
// short = (ws // 2) x block_size; at every step of the record's 1670.
TEST(Record29Train, WindowsFollowTheRecordsSchedule) {
  Record29Config c;
  c.vocab_padded = 128;
  c.dim = 32;
  c.heads = 2;
  c.head_dim = 16;
  Record29 model(c);
  const std::vector<int64_t> schedule = {3, 7, 11};
  for (int64_t step = 0; step <= 1670; ++step) {
    model->set_progress({step, 1670});
    const double x = static_cast<double>(step) / (1 + 1670);
    const int64_t ws = schedule[static_cast<size_t>(static_cast<int64_t>(3 * x))];
    ASSERT_EQ(model->long_window(), ws * 128) << "step " << step;
    ASSERT_EQ(model->short_window(), ws / 2 * 128) << "step " << step;
  }
  model->set_progress({0, 1670});
  EXPECT_EQ(model->long_window(), 384);
  EXPECT_EQ(model->short_window(), 128);
  model->set_progress({1670, 1670});
  EXPECT_EQ(model->long_window(), 1408);
  EXPECT_EQ(model->short_window(), 640);
}

TEST(Record29Train, ConfigMistakesNameTheirKey) {
  const auto dir = document_dir("errors");
  auto with = [&](const std::string& change) {
    auto o = tiny_record29(dir);
    o.push_back(change);
    return o;
  };
  struct Case {
    std::string change, key;
  };
  for (const auto& c : std::vector<Case>{{"train.micro_batch=2", "train.micro_batch"},
                                         {"model.windows=L S L", "model.windows"},
                                         {"model.windows=L S X L", "model.windows"},
                                         {"model.value_embeds=0 1 3 -", "model.value_embeds"},
                                         {"model.window_schedule=3 0", "model.window_schedule"},
                                         {"model.head_dim=18", "model.head_dim"},
                                         {"train.val_seq_len=300", "train.val_seq_len"}}) {
    const std::string message = config_error(with(c.change));
    EXPECT_NE(message.find(c.key), std::string::npos) << c.change << ": " << message;
  }
  // Graphs replay one batch shape; packed documents change their offsets.
  Config config = load_config({}, tiny_record29(dir));
  config.train.cuda_graphs = true;
  const auto model = make_model(config, torch::kCPU);
  try {
    make_micro_step_graph(config, nullptr, *model, torch::kCPU, plan_batches(config, 1, model->layout()));
    FAIL() << "train.cuda_graphs was accepted for packed documents";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.recipe record29"), std::string::npos) << e.what();
  }
}

// Every record-50 feature at a small size (smear, key offset, YaRN over the
// window schedule, the gated skip, the backout, extension and final windows,
// NorMuon and cautious decays, Adam every other step, lr stages, the batch
// schedule 256 -> 384 -> 512 tokens): the loss falls, and a run resumed in
// each stage repeats the rest exactly: from step 3 (the first of stage 1,
// whose batch is not the checkpoint's), 5 (after an even step, with Adam's
// gradient half summed), 7 (stage 2) and 9 (the extension).
TEST(Record50Train, LossFallsAndResumesBitForBitInEveryStage) {
  const auto dir = document_dir("record50");
  std::vector<std::string> overrides = {
      "model.recipe=record50", "model.vocab_size=50257", "model.layers=4", "model.heads=2", "model.head_dim=16",
      "model.dim=32", "model.seq_len=256", "model.windows=S L - L", "model.value_embeds=1 - - 0",
      "model.window_schedule=1 2", "model.extension_window=3", "model.final_window=4", "model.window_block=16",
      "model.attn_scale=0.1", "model.smear=true", "model.key_offset=true", "model.yarn=true", "model.skips=0>2",
      "model.backout_layer=1", "model.fp8_head=true", "data.max_doc_tokens=64",
      "train.micro_batch=1", "train.batch_tokens=512", "train.batch_schedule=256 384 512",
      "train.doc_cut_schedule=32 64 48", "train.steps=10",
      "train.val_every=5",
      "train.val_tokens=1024", "train.val_seq_len=512", "train.timing_warmup_steps=0", "train.val_loss_target=0",
      "schedule.extension_steps=2", "schedule.stage_lr=1 1.5", "schedule.cooldown_frac=0.5",
      "schedule.cooldown_floor=0.1", "optim.adam.embed_lr=0.05", "optim.adam.head_lr=0.01",
      "optim.adam.scalar_lr=0.02", "optim.adam.beta1=0.65", "optim.adam.weight_decay=0.005",
      "optim.adam.scalar_wd_mul=0", "optim.adam.cautious_weight_decay=true", "optim.adam.step_every=2",
      "optim.adam.eps_before_bias_correction=true", "optim.muon.lr=0.02", "optim.muon.polar=polar_express",
      "optim.muon.normuon=true", "optim.muon.cautious_weight_decay=true", "optim.muon.weight_decay=1.2",
      "optim.muon.lr_mul=attn.qkvo_w=2 mlp.c_proj=2", "optim.muon.momentum_cooldown_steps=3",
      "checkpoint.every=1", "checkpoint.keep_last=10", "data.train=" + (dir / "train_*.bin").string(),
      "data.val=" + (dir / "val_*.bin").string(), "run.dir=" + (dir / "run").string(), "run.log_level=warn",
      "run.device=cpu"};
  const Config config = load_config({}, overrides);
  run_training(config, {});
  const auto straight = read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_TRUE(straight.front().val_loss && straight.back().val_loss);
  EXPECT_NEAR(*straight.front().val_loss, std::log(50304.0), 1e-3);
  EXPECT_LT(*straight.back().val_loss, *straight.front().val_loss - 1.0);
  const auto state = load_safetensors((dir / "run/checkpoints/step_000005/rank0.safetensors").string());
  EXPECT_EQ(state.tensors.count("adam.pending_grad.lm_head.weight"), 1u) << "Adam's half sum is saved";
  for (int64_t from : {9, 7, 5, 3}) expect_resume_repeats_the_run(dir, config, 10, from);
  // Another batch or cut schedule would read other documents: refused unless forced.
  for (const char* change : {"train.doc_cut_schedule=32 64 64", "train.batch_schedule=256 512 512"}) {
    auto changed = overrides;
    changed.push_back(change);
    TrainOptions resume;
    resume.resume = true;
    try {
      run_training(load_config({}, changed), resume);
      ADD_FAILURE() << change << ": resumed";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("refusing to resume"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::string(change).substr(0, std::string(change).find('='))),
                std::string::npos)
          << e.what();
    }
  }
}

// The batch schedule's stages in a run's plan: record 50's 131,072 ->
// 262,144 -> 393,216 tokens switch at steps 684 and 1367 of 2050 scheduled
// (the record's get_bs), the 40 extension steps keep the last; the packed
// sequence per rank is the stage's share, on 8 ranks and on one (8 micro-steps).
TEST(Record50Train, BatchScheduleFollowsTheRecordsStages) {
  const std::string configs = std::string(MUONRUN_SOURCE_DIR) + "/configs/";
  const Config config = load_config({configs + "record50.yaml"}, {"train.batch_schedule=131072 262144 393216"});
  for (int world : {8, 1}) {
    const BatchPlan plan = plan_batches(config, world, BatchLayout::packed_documents);
    EXPECT_EQ(plan.accumulation, 8 / world);
    for (const auto& [step, tokens] : std::vector<std::pair<int64_t, int64_t>>{
             {0, 131072}, {683, 131072}, {684, 262144}, {1366, 262144}, {1367, 393216}, {2049, 393216},
             {2050, 393216}, {2089, 393216}}) {
      EXPECT_EQ(plan.step_tokens(step), tokens) << "step " << step;
      EXPECT_EQ(plan.step_seq_len(step), tokens / 8) << "step " << step << ", world " << world;
    }
    EXPECT_EQ(plan.tokens_of_steps(0, 2090), 684 * 131072 + 683 * 262144 + 723 * 393216);
  }
  auto error = [](const Config& c, BatchLayout layout) {
    try {
      plan_batches(c, 8, layout);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(no ConfigError)");
  };
  auto bad = config;
  bad.train.batch_schedule = "131072 500000";
  EXPECT_NE(error(bad, BatchLayout::packed_documents).find("train.batch_schedule: '500000'"), std::string::npos);
  bad.train.batch_schedule = "131071";
  EXPECT_NE(error(bad, BatchLayout::packed_documents).find("train.batch_schedule: '131071'"), std::string::npos);
  bad.train.batch_schedule = "131072";
  EXPECT_NE(error(bad, BatchLayout::rows).find("needs a packed-document recipe"), std::string::npos);
  // Each stage's document cut: data.max_doc_tokens throughout, or one per stage.
  const BatchPlan plain = plan_batches(config, 8, BatchLayout::packed_documents);
  EXPECT_EQ(plain.step_stage(0).max_doc_tokens, 2048);
  EXPECT_EQ(plain.step_stage(2089).max_doc_tokens, 2048);
  auto cut = config;
  cut.train.doc_cut_schedule = "896 2048 1024";
  const BatchPlan staged = plan_batches(cut, 8, BatchLayout::packed_documents);
  for (const auto& [step, tokens, max_doc] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {0, 16384, 896}, {683, 16384, 896}, {684, 32768, 2048}, {1367, 49152, 1024}, {2089, 49152, 1024}}) {
    EXPECT_EQ(staged.step_stage(step).seq_len, tokens) << "step " << step;
    EXPECT_EQ(staged.step_stage(step).max_doc_tokens, max_doc) << "step " << step;
  }
  cut.train.doc_cut_schedule = "896 2048";
  EXPECT_NE(error(cut, BatchLayout::packed_documents).find("train.doc_cut_schedule: '896 2048': expected one cut per "
                                                           "stage of train.batch_schedule ('131072 262144 393216': 3 "
                                                           "stages), got 2"),
            std::string::npos)
      << error(cut, BatchLayout::packed_documents);
  cut.train.doc_cut_schedule = "896 0 2048";
  EXPECT_NE(error(cut, BatchLayout::packed_documents).find("train.doc_cut_schedule: '0' is not a cut"),
            std::string::npos);
  cut.train.batch_schedule = "";
  cut.train.doc_cut_schedule = "2048";
  EXPECT_NE(error(cut, BatchLayout::packed_documents).find("train.batch_schedule ('': 0 stages), got 1"),
            std::string::npos);
}

TEST(Record50Train, Record50KeysAreRefusedByTheOtherRecipes) {
  const auto dir = document_dir("record50_keys");
  auto overrides = tiny_record29(dir);
  overrides.push_back("model.smear=true");
  const auto e = config_error(overrides);
  EXPECT_NE(e.find("model.smear is a feature of model.recipe record50, not record29"), std::string::npos) << e;
}

// Every run config the project ships (configs/*.yaml; configs/ablations holds
// sweep files, test_sweep's) loads, plans its batches on one rank, and names
// a network its recipe can build (record 29's and 50's patterns parse).
TEST(ShippedConfigs, EveryConfigLoadsAndPlansItsBatches) {
  const fs::path configs = fs::path(MUONRUN_SOURCE_DIR) / "configs";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const Config c = load_config({entry.path().string()}, {});
    const auto layout =
        c.model.recipe == Recipe::record11 ? BatchLayout::rows : BatchLayout::packed_documents;
    EXPECT_NO_THROW(plan_batches(c, 1, layout));
    if (c.model.recipe == Recipe::record29) {
      EXPECT_NO_THROW(record29_config(c.model));
    }
    if (c.model.recipe == Recipe::record50) {
      EXPECT_NO_THROW(record50_config(c.model));
    }
    ++checked;
  }
  EXPECT_GE(checked, 9);
}
