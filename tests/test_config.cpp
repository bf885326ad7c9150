// Config: precedence of files and --set, and every kind of error message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <fstream>

#include "trainer/config/config.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  fs::path dir = fs::temp_directory_path() / "muonrun_test_config";
  fs::create_directories(dir);
  fs::path path = dir / name;
  std::ofstream(path) << text;
  return path.string();
}

// The message of the ConfigError thrown by `f`, or "" if none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, DefaultsAreTheRecord11Recipe) {
  Config c;
  EXPECT_EQ(c.model.layers, 12);
  EXPECT_EQ(c.model.heads, 6);
  EXPECT_EQ(c.model.head_dim, 128);
  EXPECT_EQ(c.model.dim, 768);
  EXPECT_EQ(c.train.batch_tokens, 8 * 64 * 1024);
  EXPECT_DOUBLE_EQ(c.optim.muon.lr, 0.04);
  EXPECT_DOUBLE_EQ(c.optim.adam.embed_lr, 0.6);
  EXPECT_DOUBLE_EQ(c.optim.adam.head_lr, 0.008);
  EXPECT_DOUBLE_EQ(c.schedule.cooldown_frac, 0.3);
}

TEST(Config, LaterFilesAndOverridesWin) {
  auto a = write_temp("a.yaml", "model:\n  layers: 4\n  dim: 256\noptim:\n  muon:\n    lr: 0.01\n");
  auto b = write_temp("b.yaml", "model:\n  layers: 6\n");
  Config c = load_config({a, b}, {"optim.muon.lr=0.05", "run.name=x"});
  EXPECT_EQ(c.model.layers, 6);    // b overrides a
  EXPECT_EQ(c.model.dim, 256);     // only a sets it
  EXPECT_DOUBLE_EQ(c.optim.muon.lr, 0.05);  // --set overrides both files
  EXPECT_EQ(c.run.name, "x");
  EXPECT_EQ(c.model.heads, 6);     // untouched default
  Config d = load_config({a, b}, {"model.layers=2", "model.layers=3"});
  EXPECT_EQ(d.model.layers, 3);    // the last --set wins
}

TEST(Config, UnknownKeyNamesFileLineAndSuggests) {
  auto f = write_temp("typo.yaml", "model:\n  layers: 4\noptim:\n  muon:\n    lrr: 0.1\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("typo.yaml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("optim.muon.lrr"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'optim.muon.lr'"), std::string::npos) << e;
}

TEST(Config, UnknownKeyWithoutCloseMatchListsValidKeys) {
  std::string e = error_of([] { load_config({}, {"model.zzzzzzzz=1"}); });
  EXPECT_NE(e.find("--set model.zzzzzzzz=1"), std::string::npos) << e;
  EXPECT_NE(e.find("valid keys here"), std::string::npos) << e;
  EXPECT_NE(e.find("layers"), std::string::npos) << e;
}

TEST(Config, UnknownSectionIsRejected) {
  auto f = write_temp("section.yaml", "modle:\n  layers: 4\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("section.yaml:1"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'model'"), std::string::npos) << e;
}

TEST(Config, WrongTypeNamesKeyAndValue) {
  auto f = write_temp("type.yaml", "run:\n  name: a\nmodel:\n  layers: four\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("type.yaml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers: expected an integer, got 'four'"), std::string::npos) << e;
  EXPECT_NE(error_of([] { load_config({}, {"model.layers=2.5"}); }).find("expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config({}, {"optim.muon.nesterov=maybe"}); }).find("true or false"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config({}, {"model=3"}); }).find("expected a mapping"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config({}, {"model.layers=[1, 2]"}); }).find("expected an integer"),
            std::string::npos);
}

TEST(Config, OutOfRangeNamesTheRange) {
  std::string e = error_of([] { load_config({}, {"model.layers=0"}); });
  EXPECT_NE(e.find("model.layers: 0 is out of range [1, 1024]"), std::string::npos) << e;
  e = error_of([] { load_config({}, {"schedule.cooldown_frac=1.5"}); });
  EXPECT_NE(e.find("schedule.cooldown_frac"), std::string::npos) << e;
  e = error_of([] { load_config({}, {"optim.muon.lr=-1"}); });
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;
  e = error_of([] { load_config({}, {"optim.muon.lr=.nan"}); });
  EXPECT_NE(e.find("finite"), std::string::npos) << e;
}

TEST(Config, ChoiceListsAlternatives) {
  std::string e = error_of([] { load_config({}, {"run.device=tpu"}); });
  EXPECT_NE(e.find("'tpu' is not one of auto | cpu | cuda"), std::string::npos) << e;
}

// Every name of every choice reads into its enum and writes back unchanged
// (config.yaml and config hashes spell choices by name).
TEST(Config, EveryChoiceNameRoundTrips) {
  const auto check = [](const std::string& key, const auto& table, auto field) {
    for (const auto& choice : table) {
      const Config c = load_config({}, {key + "=" + choice.name});
      EXPECT_TRUE(field(c) == choice.value) << key << "=" << choice.name;
      EXPECT_STREQ(name_of(field(c)), choice.name);
      bool found = false;
      for (const auto& [k, v] : flatten(c))
        if (k == key) { EXPECT_EQ(v, choice.name); found = true; }
      EXPECT_TRUE(found) << key;
    }
  };
  check("run.log_level", kLogLevelChoices, [](const Config& c) { return c.run.log_level; });
  check("run.device", kRunDeviceChoices, [](const Config& c) { return c.run.device; });
  check("model.kernels", kKernelsChoices, [](const Config& c) { return c.model.kernels; });
  check("train.on_divergence", kOnDivergenceChoices, [](const Config& c) { return c.train.on_divergence; });
  check("optim.matrix_optimizer", kMatrixOptimizerChoices, [](const Config& c) { return c.optim.matrix_optimizer; });
  check("optim.preset", kPresetChoices, [](const Config& c) { return c.optim.preset; });
  check("optim.muon.distribute", kDistributeChoices, [](const Config& c) { return c.optim.muon.distribute; });
  check("optim.muon.polar", kPolarChoices, [](const Config& c) { return c.optim.muon.polar; });
  check("optim.muon.shape_factor", kShapeFactorChoices, [](const Config& c) { return c.optim.muon.shape_factor; });
  check("optim.steepest.mode", kSteepestModeChoices, [](const Config& c) { return c.optim.steepest.mode; });
  check("optim.steepest.outer_norm", kOuterNormChoices, [](const Config& c) { return c.optim.steepest.outer_norm; });
  check("optim.steepest.backup_norm", kBackupNormChoices, [](const Config& c) { return c.optim.steepest.backup_norm; });
}

TEST(Config, SyntaxErrorsAndMissingFiles) {
  auto f = write_temp("syntax.yaml", "model:\n  layers: [1, 2\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("syntax.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;
  e = error_of([] { load_config({"/nonexistent/x.yaml"}, {}); });
  EXPECT_NE(e.find("/nonexistent/x.yaml: cannot open"), std::string::npos) << e;
  e = error_of([] { load_config({}, {"model.layers"}); });
  EXPECT_NE(e.find("expected key.path=value"), std::string::npos) << e;
  e = error_of([] { load_config({}, {"model..layers=3"}); });
  EXPECT_NE(e.find("empty key"), std::string::npos) << e;
  auto g = write_temp("list.yaml", "- 1\n- 2\n");
  EXPECT_NE(error_of([&] { load_config({g}, {}); }).find("mapping"), std::string::npos);
}

TEST(Config, EmptyFileAndEmptySectionKeepDefaults) {
  auto f = write_temp("empty.yaml", "");
  auto g = write_temp("empty_section.yaml", "model:\n");
  Config c = load_config({f, g}, {});
  EXPECT_EQ(c.model.layers, 12);
}

TEST(Config, PrintedYamlReadsBackToTheSameConfig) {
  Config c = load_config({}, {"model.layers=3", "optim.muon.lr=0.0123", "run.name=with space",
                              "data.train=a/*.bin"});
  Config d;
  apply_yaml(d, to_yaml(c), "printed");
  EXPECT_EQ(flatten(c), flatten(d));
  // Doubles print in their shortest exact form.
  EXPECT_NE(to_yaml(c).find("lr: 0.0123"), std::string::npos);
}

TEST(Config, FlattenNamesEveryKeyOnce) {
  auto entries = flatten(Config{});
  std::set<std::string> keys;
  for (auto& [k, v] : entries) EXPECT_TRUE(keys.insert(k).second) << k;
  EXPECT_TRUE(keys.count("optim.muon.lr"));
  EXPECT_TRUE(keys.count("model.layers"));
}

// ---------------------------------------------------------------------------
// Keys given twice, base configs, choices
// ---------------------------------------------------------------------------

namespace {

// A fresh directory for config files that name each other, inside one of
// this process (other build trees run this suite too), removed at exit.
fs::path config_dir(const std::string& name) {
  struct Root {
    fs::path path = fs::temp_directory_path() / ("muonrun_test_config_" + std::to_string(::getpid()));
    ~Root() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  };
  static Root root;
  const fs::path dir = root.path / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string write_in(const fs::path& dir, const std::string& name, const std::string& text) {
  const fs::path path = dir / name;
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace

// yaml-cpp keeps both entries and a lookup finds the first: without the check
// the second value would be silently ignored.
TEST(Config, KeyGivenTwiceNamesTheKeyPathAndBothLines) {
  const fs::path dir = config_dir("twice");
  auto f = write_in(dir, "a.yaml",
                    "run:\n  name: x\noptim:\n  muon:\n    lr: 0.01\n    momentum: 0.9\n    lr: 0.02\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("a.yaml:7: key 'optim.muon.lr' given twice (first at line 5)"), std::string::npos) << e;

  f = write_in(dir, "section.yaml", "model:\n  layers: 4\ntrain:\n  steps: 3\nmodel:\n  dim: 64\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("section.yaml:5: key 'model' given twice (first at line 1)"), std::string::npos) << e;

  f = write_in(dir, "quoted.yaml", "model:\n  \"layers\": 4\n  layers: 5\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("quoted.yaml:3: key 'model.layers' given twice (first at line 2)"), std::string::npos) << e;
}

TEST(Config, KeyGivenTwiceInAFlowMapping) {
  const fs::path dir = config_dir("twice_flow");
  auto f = write_in(dir, "flow.yaml", "optim: {muon: {lr: 0.01, momentum: 0.9, lr: 0.02}}\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("flow.yaml:1: key 'optim.muon.lr' given twice (first at line 1)"), std::string::npos) << e;

  f = write_in(dir, "lines.yaml", "model: {layers: 4,\n        dim: 64,\n        layers: 5}\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("lines.yaml:3: key 'model.layers' given twice (first at line 1)"), std::string::npos) << e;

  e = error_of([] { load_config({}, {"optim.muon={lr: 0.01, lr: 0.02}"}); });
  EXPECT_NE(e.find("--set optim.muon={lr: 0.01, lr: 0.02}: key 'optim.muon.lr' given twice"), std::string::npos)
      << e;
}

TEST(Config, SameKeyInDifferentSectionsOrFilesIsNoDuplicate) {
  const fs::path dir = config_dir("not_twice");
  auto f = write_in(dir, "a.yaml",
                    "optim:\n  adam: {weight_decay: 0.1}\n  muon:\n    weight_decay: 0.2\nmodel: {layers: 4}\n");
  auto g = write_in(dir, "b.yaml", "model: {layers: 5}\n");
  Config c = load_config({f, g}, {"model.layers=6"});
  EXPECT_DOUBLE_EQ(c.optim.adam.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(c.optim.muon.weight_decay, 0.2);
  EXPECT_EQ(c.model.layers, 6);
}

TEST(Config, BaseConfigIsAppliedFirstRelativeToTheFileNamingIt) {
  const fs::path dir = config_dir("base");
  write_in(dir, "common/root.yaml", "model:\n  layers: 3\n  dim: 96\n  heads: 3\nrun:\n  name: root\n");
  write_in(dir, "common/mid.yaml", "base: root.yaml\nmodel:\n  dim: 128\n");
  const auto child = write_in(dir, "configs/child.yaml", "# a variant\nbase: ../common/mid.yaml\nrun: {name: child}\n");
  const auto later = write_in(dir, "later.yaml", "model: {heads: 4}\n");
  // Relative to the including file, not to the working directory.
  const fs::path cwd = fs::current_path();
  fs::current_path(fs::temp_directory_path());
  Config c = load_config({child, later}, {"model.layers=5"});
  fs::current_path(cwd);
  EXPECT_EQ(c.run.name, "child");   // the file wins over its base ...
  EXPECT_EQ(c.model.dim, 128);      // ... which wins over its own base
  EXPECT_EQ(c.model.heads, 4);      // a later -c file wins over all of them
  EXPECT_EQ(c.model.layers, 5);     // and --set over every file
  // The effective config holds no `base`, and reads back the same.
  EXPECT_EQ(("\n" + to_yaml(c)).find("\nbase:"), std::string::npos);
  Config d;
  apply_yaml(d, to_yaml(c), "printed");
  EXPECT_EQ(flatten(c), flatten(d));
}

TEST(Config, BaseConfigErrorsNameTheFiles) {
  const fs::path dir = config_dir("base_errors");
  auto f = write_in(dir, "missing.yaml", "run: {name: x}\nbase: nowhere.yaml\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("missing.yaml:2: base: "), std::string::npos) << e;
  EXPECT_NE(e.find((dir / "nowhere.yaml").string() + ": cannot open config file"), std::string::npos) << e;

  write_in(dir, "bad_base.yaml", "model:\n  layers: 0\n");
  f = write_in(dir, "uses_bad.yaml", "base: bad_base.yaml\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("uses_bad.yaml:1: base: "), std::string::npos) << e;
  EXPECT_NE(e.find("bad_base.yaml:2: model.layers: 0 is out of range"), std::string::npos) << e;

  f = write_in(dir, "list.yaml", "base: [a.yaml, b.yaml]\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("list.yaml:1: base: expected the path of a config file"), std::string::npos) << e;

  f = write_in(dir, "twice.yaml", "base: a.yaml\nbase: b.yaml\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("twice.yaml:2: key 'base' given twice (first at line 1)"), std::string::npos) << e;

  // Only at the top level of a file, not inside a section nor in --set.
  f = write_in(dir, "nested.yaml", "model:\n  base: a.yaml\n");
  e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("nested.yaml:2: unknown key 'model.base'"), std::string::npos) << e;
  e = error_of([] { load_config({}, {"base=a.yaml"}); });
  EXPECT_NE(e.find("--set base=a.yaml: unknown key 'base'"), std::string::npos) << e;
}

TEST(Config, BaseConfigThatLeadsBackIsRefused) {
  const fs::path dir = config_dir("base_cycle");
  auto self = write_in(dir, "self.yaml", "base: ./self.yaml\n");
  std::string e = error_of([&] { load_config({self}, {}); });
  EXPECT_NE(e.find("self.yaml:1: base: './self.yaml' leads back to a file being read: " + self + " -> " + self),
            std::string::npos)
      << e;

  const auto a = write_in(dir, "a.yaml", "base: sub/b.yaml\n");
  const auto b = write_in(dir, "sub/b.yaml", "base: ../a.yaml\n");
  e = error_of([&] { load_config({a}, {}); });
  EXPECT_NE(e.find("b.yaml:1: base: '../a.yaml' leads back to a file being read: " + a + " -> " + b + " -> " + a),
            std::string::npos)
      << e;

  // One file read twice, as a base and on its own, is no cycle.
  const auto leaf = write_in(dir, "leaf.yaml", "model: {layers: 3}\n");
  const auto top = write_in(dir, "top.yaml", "base: leaf.yaml\n");
  EXPECT_EQ(load_config({top, top, leaf}, {}).model.layers, 3);
}

TEST(Config, Speedrun1GpuIsTheSpeedrunConfigUnderAnotherName) {
  const std::string configs = std::string(MUONRUN_SOURCE_DIR) + "/configs/";
  auto eight = flatten(load_config({configs + "speedrun.yaml"}, {}));
  auto one = flatten(load_config({configs + "speedrun-1gpu.yaml"}, {}));
  ASSERT_EQ(one.size(), eight.size());
  for (size_t i = 0; i < one.size(); ++i) {
    if (one[i].first == "run.name") {
      EXPECT_EQ(one[i].second, "speedrun-1gpu");
      EXPECT_EQ(eight[i].second, "speedrun");
    } else {
      EXPECT_EQ(one[i], eight[i]);
    }
  }
}

// configs/record29.yaml holds record 29's hyperparameters (train_gpt.py of
// records/track_1_short/2025-09-03_FA3: Hyperparameters, get_lr, get_ws,
// the optimizers' lr x lr_mul), its one-GPU variant differs only by name,
// and `muonrun config` writes every key of it with a comment.
TEST(Config, Record29ConfigsHoldTheRecordsHyperparameters) {
  const std::string configs = std::string(MUONRUN_SOURCE_DIR) + "/configs/";
  const Config c = load_config({configs + "record29.yaml"}, {});
  EXPECT_EQ(c.model.recipe, Recipe::record29);
  EXPECT_EQ(c.model.seq_len, 2048 * 24);                   // train_batch_size / 8 ranks
  EXPECT_EQ(c.train.batch_tokens, 2048 * 24 * 8);
  EXPECT_EQ(c.train.val_seq_len, 4 * 64 * 1024);           // val_batch_size / 8 ranks
  EXPECT_EQ(c.train.val_tokens, 10485760);
  EXPECT_EQ(c.train.steps, 1670);
  EXPECT_EQ(c.data.max_doc_tokens, 128 * 16);              // train_max_seq_len
  EXPECT_EQ(c.model.windows, "L S S S L S S - S S S L");
  EXPECT_EQ(c.model.value_embeds, "0 1 2 - - - - - - 0 1 2");
  EXPECT_EQ(c.model.window_schedule, "3 7 11");
  EXPECT_EQ(c.model.window_block, 128);
  EXPECT_EQ(c.model.attn_scale, 0.12);
  EXPECT_TRUE(c.model.fp8_head);
  EXPECT_EQ(c.schedule.cooldown_frac, 0.45);
  EXPECT_EQ(c.schedule.cooldown_floor, 0.1);
  EXPECT_DOUBLE_EQ(c.optim.adam.embed_lr, 0.008 * 75);
  EXPECT_DOUBLE_EQ(c.optim.adam.head_lr, 0.008);
  EXPECT_DOUBLE_EQ(c.optim.adam.scalar_lr, 0.008 * 5);
  EXPECT_EQ(c.optim.adam.beta1, 0.8);
  EXPECT_EQ(c.optim.adam.beta2, 0.95);
  EXPECT_EQ(c.optim.adam.eps, 1e-10);
  EXPECT_TRUE(c.optim.adam.eps_before_bias_correction);
  EXPECT_EQ(c.optim.muon.lr, 0.05);
  EXPECT_EQ(c.optim.muon.momentum_warmup_start, 0.85);
  EXPECT_EQ(c.optim.muon.momentum, 0.95);
  EXPECT_EQ(c.optim.muon.momentum_warmup_steps, 300);

  auto eight = flatten(c);
  auto one = flatten(load_config({configs + "record29-1gpu.yaml"}, {}));
  ASSERT_EQ(one.size(), eight.size());
  for (size_t i = 0; i < one.size(); ++i) {
    if (one[i].first != "run.name") {
      EXPECT_EQ(one[i], eight[i]);
    }
  }

  std::istringstream yaml(to_yaml(c));
  int keys = 0;
  for (std::string line; std::getline(yaml, line);) {
    if (line.empty() || line.back() == ':') continue;  // a section
    ++keys;
    EXPECT_NE(line.find("  # "), std::string::npos) << "no comment: " << line;
  }
  EXPECT_EQ(keys, static_cast<int>(eight.size()));
}

// configs/record50.yaml against the record's script
// (records/track_1_short/2025-12-18_CautiousWDAdam: Hyperparameters, the
// optimizer setup, get_lr, get_ws, the momentum schedule); the one-GPU file
// differs only in its name.
TEST(Config, Record50ConfigsHoldTheRecordsHyperparameters) {
  const std::string configs = std::string(MUONRUN_SOURCE_DIR) + "/configs/";
  const Config c = load_config({configs + "record50.yaml"}, {});
  EXPECT_EQ(c.model.recipe, Recipe::record50);
  EXPECT_EQ(c.model.layers, 11);
  EXPECT_EQ(c.model.windows, "S S S L S S - S S S L");
  EXPECT_EQ(c.model.value_embeds, "1 2 - - - - - - 0 1 2");
  EXPECT_EQ(c.model.window_schedule, "3 7 11");
  EXPECT_EQ(c.model.extension_window, 13);
  EXPECT_EQ(c.model.final_window, 20);
  EXPECT_EQ(c.model.attn_scale, 0.1);
  EXPECT_TRUE(c.model.smear && c.model.key_offset && c.model.yarn && c.model.fp8_head);
  EXPECT_EQ(c.model.skips, "3>6");
  EXPECT_EQ(c.model.backout_layer, 7);
  EXPECT_EQ(c.train.steps, 2090);
  EXPECT_EQ(c.train.batch_schedule, "131072 262144 393216");  // 8, 16, 24 x 2048 x 8
  EXPECT_EQ(c.train.batch_tokens, 393216);
  EXPECT_EQ(c.schedule.extension_steps, 40);
  EXPECT_EQ(c.schedule.stage_lr, "1 1.51 1.93");
  EXPECT_EQ(c.schedule.cooldown_frac, 0.55);
  EXPECT_EQ(c.schedule.cooldown_floor, 0.1);
  EXPECT_EQ(c.train.val_every, 250);
  EXPECT_DOUBLE_EQ(c.optim.adam.embed_lr, 0.008 * 75);
  EXPECT_DOUBLE_EQ(c.optim.adam.scalar_lr, 0.008 * 5);
  EXPECT_EQ(c.optim.adam.beta1, 0.65);
  EXPECT_EQ(c.optim.adam.eps, 1e-8);
  EXPECT_EQ(c.optim.adam.weight_decay, 0.005);
  EXPECT_EQ(c.optim.adam.scalar_wd_mul, 0);
  EXPECT_TRUE(c.optim.adam.cautious_weight_decay);
  EXPECT_EQ(c.optim.adam.step_every, 2);
  EXPECT_EQ(c.optim.muon.lr, 0.023);
  EXPECT_EQ(c.optim.muon.weight_decay, 1.2);
  EXPECT_TRUE(c.optim.muon.normuon && c.optim.muon.cautious_weight_decay);
  EXPECT_EQ(c.optim.muon.polar, Polar::polar_express);
  EXPECT_EQ(c.optim.muon.momentum_cooldown_steps, 50);
  EXPECT_EQ(c.optim.muon.lr_mul, "attn.qkvo_w=2 mlp.c_proj=2");
  auto eight = flatten(c);
  auto one = flatten(load_config({configs + "record50-1gpu.yaml"}, {}));
  ASSERT_EQ(one.size(), eight.size());
  for (size_t i = 0; i < one.size(); ++i) {
    if (one[i].first != "run.name") {
      EXPECT_EQ(one[i], eight[i]);
    }
  }
}

TEST(Config, ChoiceInAFileNamesTheKeyTheValueAndTheAllowedValues) {
  const fs::path dir = config_dir("choice");
  auto f = write_in(dir, "choice.yaml", "optim:\n  muon:\n    polar: newton\n");
  std::string e = error_of([&] { load_config({f}, {}); });
  EXPECT_NE(e.find("choice.yaml:3: optim.muon.polar: 'newton' is not one of quintic | polar_express | svd"),
            std::string::npos)
      << e;
  e = error_of([] { load_config({}, {"train.on_divergence=retry"}); });
  EXPECT_NE(e.find("--set train.on_divergence=retry: train.on_divergence: 'retry' is not one of "
                   "skip | rollback | stop"),
            std::string::npos)
      << e;
}
