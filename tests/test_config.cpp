// Config: precedence of files and --set, and every kind of error message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "trainer/config.h"

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
