// Hostile input: every kind of file muonrun reads (configs and --set
// overrides, token shards, vocabulary files, JSONL corpora, checkpoints),
// truncated, corrupt, mismatched or huge, must fail with an error that names
// the file and the problem, never a crash, a hang or a huge allocation.
// One test per case; tests/fuzz covers the inputs nobody thought of.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "models/gpt.h"
#include "trainer/io/safetensors.h"
#include "tests/test_helpers.h"
#include "trainer/io/checkpoint.h"
#include "trainer/config/config.h"
#include "trainer/data/data_loader.h"
#include "trainer/data/shard.h"
#include "trainer/data/text_input.h"
#include "trainer/data/tokenizer.h"

using namespace muonrun;
using muonrun::tests::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kGpt2Dir = std::string(MUONRUN_SHARED_DIR) + "/data/gpt2";

std::string write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path.string();
}

// Whether `error` names `file` and says `problem`.
testing::AssertionResult names(const std::string& error, const std::string& file,
                               const std::string& problem) {
  if (error.empty()) return testing::AssertionFailure() << "no error";
  if (error.find(file) == std::string::npos)
    return testing::AssertionFailure() << "does not name " << file << ": " << error;
  if (error.find(problem) == std::string::npos)
    return testing::AssertionFailure() << "does not say '" << problem << "': " << error;
  return testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------
// Config files and --set
// ---------------------------------------------------------------------------

std::string config_error(const std::string& file) {
  return error_of([&] { load_config({file}, {}); });
}

std::string yaml_error(const std::string& name, const std::string& yaml) {
  static const fs::path dir = tests::scratch_dir("hostile_config");
  return config_error(write_file(dir / name, yaml));
}

std::string set_error(const std::string& assignment) {
  return error_of([&] { load_config({}, {assignment}); });
}

TEST(HostileConfig, FileThatIsADirectory) {
  const fs::path dir = tests::scratch_dir("hostile_config_dir");
  EXPECT_TRUE(names(config_error(dir.string()), dir.string(), "is a directory"));
}

TEST(HostileConfig, BinaryGarbage) {
  std::mt19937 rng(1);
  std::string garbage = "\x7f" "ELF\x02\x01\x01";
  for (int i = 0; i < 4096; ++i) garbage += static_cast<char>(rng());
  EXPECT_TRUE(names(yaml_error("garbage.yaml", garbage), "garbage.yaml", "YAML syntax error"));
}

// Refused unread: a config is a few kilobytes, and yaml-cpp would build a
// node per scalar of a 50 MB file (seconds and gigabytes).
TEST(HostileConfig, FiftyMegabytesAreRefusedWithoutParsing) {
  std::string yaml = "run:\n  name: big\n";
  while (yaml.size() < (50u << 20)) yaml += "# padding padding padding padding padding padding\n";
  EXPECT_TRUE(names(yaml_error("big.yaml", yaml), "big.yaml", "larger than 1 MiB"));
}

TEST(HostileConfig, DeeplyNestedYaml) {
  EXPECT_TRUE(names(yaml_error("deep.yaml", "model: " + std::string(100000, '[')), "deep.yaml",
                    "nesting deeper than"));
  std::string blocks;
  for (int depth = 0; depth < 600; ++depth) blocks += std::string(depth, ' ') + "a:\n";
  EXPECT_TRUE(names(yaml_error("deep_blocks.yaml", blocks), "deep_blocks.yaml",
                    "nesting deeper than"));
}

TEST(HostileConfig, UnknownKey) {
  EXPECT_TRUE(names(yaml_error("unknown.yaml", "model:\n  layer: 4\n"), "unknown.yaml:2",
                    "unknown key 'model.layer' (did you mean 'model.layers'?)"));
}

TEST(HostileConfig, SetWithoutEquals) {
  EXPECT_TRUE(names(set_error("model.layers"), "--set model.layers", "expected key.path=value"));
}

TEST(HostileConfig, NumberTooLargeForADouble) {
  EXPECT_TRUE(names(yaml_error("inf.yaml", "optim:\n  muon:\n    lr: 1e999\n"), "inf.yaml:3",
                    "optim.muon.lr: expected a number, got '1e999'"));
  EXPECT_TRUE(names(set_error("optim.muon.lr=.inf"), "--set optim.muon.lr=.inf",
                    "expected a finite number"));
}

TEST(HostileConfig, NegativeCount) {
  EXPECT_TRUE(names(yaml_error("negative.yaml", "train:\n  steps: -1\n"), "negative.yaml:2",
                    "train.steps: -1 is out of range [1, inf]"));
}

TEST(HostileConfig, HugeIntegers) {
  EXPECT_TRUE(names(yaml_error("huge.yaml", "train:\n  micro_batch: 99999999999999999999\n"),
                    "huge.yaml:2", "expected an integer, got '99999999999999999999'"));
  EXPECT_TRUE(names(set_error("model.seq_len=4294967296"), "--set model.seq_len",
                    "4294967296 is out of range [1, 1048576]"));
}

// to_yaml() writes such bytes as U+FFFD, so a resumed run would see a
// config different from the one it saved.
TEST(HostileConfig, StringThatIsNotUtf8) {
  EXPECT_TRUE(names(set_error("data.train=/data/\xff\xfe_*.bin"), "--set data.train",
                    "data.train: not valid UTF-8 text"));
}

// ---------------------------------------------------------------------------
// Token shards
// ---------------------------------------------------------------------------

// A file with the given header fields followed by `payload_bytes` bytes.
std::string write_shard_file(const std::string& name, int32_t magic, int32_t version,
                             int32_t count, size_t payload_bytes) {
  static const fs::path dir = tests::scratch_dir("hostile_shard");
  int32_t header[256] = {magic, version, count};
  std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
  bytes.append(payload_bytes, '\x01');
  return write_file(dir / name, bytes);
}

std::string shard_error(const std::string& path) {
  return error_of([&] { ShardReader shard(path); });
}

TEST(HostileShard, HeaderClaimsTwoBillionTokensInATinyFile) {
  const std::string path = write_shard_file("claims.bin", kShardMagic, 1, INT32_MAX, 6);
  EXPECT_TRUE(names(shard_error(path), path,
                    "truncated: file has 1030 bytes but the header's token count 2147483647"));
}

TEST(HostileShard, NegativeTokenCount) {
  const std::string path = write_shard_file("negative.bin", kShardMagic, 1, -3, 0);
  EXPECT_TRUE(names(shard_error(path), path, "negative token count -3 at offset 8"));
}

TEST(HostileShard, Llama3FormatIsNamed) {
  const std::string path = write_shard_file("llama3.bin", 20240801, 7, 2, 8);
  EXPECT_TRUE(names(shard_error(path), path,
                    "llm.c's Llama-3 format with uint32 tokens, which is not supported"));
}

TEST(HostileShard, TruncatedInTheHeader) {
  const std::string full = write_shard_file("cut_header.bin", kShardMagic, 1, 4, 8);
  fs::resize_file(full, 500);
  EXPECT_TRUE(names(shard_error(full), full,
                    "file has 500 bytes, too short for the 1024-byte shard header"));
}

TEST(HostileShard, TruncatedInTheTokens) {
  const std::string path = write_shard_file("cut_tokens.bin", kShardMagic, 1, 100, 77);
  EXPECT_TRUE(names(shard_error(path), path,
                    "truncated: file has 1101 bytes but the header's token count 100 (offset 8) "
                    "needs 1224 bytes"));
}

TEST(HostileShard, DirectoryMatchingThePattern) {
  const fs::path dir = tests::scratch_dir("hostile_shard_dir");
  write_shard((dir / "train_000000.bin").string(), std::vector<uint16_t>(100, 7));
  fs::create_directory(dir / "train_000001.bin");
  const std::string error =
      error_of([&] { DataLoader loader((dir / "train_*.bin").string(), 2, 4, 0, 1); });
  EXPECT_TRUE(names(error, (dir / "train_000001.bin").string(), "is a directory"));
}

// The loader reads shards but does not know the tokenizer; the trainer passes
// the model's vocab_size so that each batch is checked before the embedding
// lookup (which on CUDA would be a device-side assert, not an error).
TEST(HostileShard, TokenOutsideTheModelsVocabulary) {
  const fs::path dir = tests::scratch_dir("hostile_shard_vocab");
  std::vector<uint16_t> tokens(40, 3);
  tokens[13] = 50257;
  write_shard((dir / "train_000000.bin").string(), tokens);
  DataLoader loader((dir / "train_*.bin").string(), 1, 8, 0, 1, 50257);
  std::vector<int64_t> batch(9);
  loader.next_batch(batch.data());  // tokens 0..8
  const std::string error = error_of([&] { loader.next_batch(batch.data()); });
  EXPECT_TRUE(names(error, (dir / "train_000000.bin").string(),
                    "token 50257 at token 13 is outside the model's vocabulary (vocab_size 50257)"));
}

// ---------------------------------------------------------------------------
// Vocabulary files
// ---------------------------------------------------------------------------

std::string encoder_error(const std::string& name, const std::string& json) {
  static const fs::path dir = tests::scratch_dir("hostile_encoder");
  const std::string path = write_file(dir / name, json);
  return error_of([&] { Tokenizer::load(path, kGpt2Dir + "/vocab.bpe"); });
}

TEST(HostileVocab, EncoderJsonThatIsNotAnObject) {
  EXPECT_TRUE(names(encoder_error("array.json", "[\"a\", 0]"), "array.json",
                    "expected a JSON object of token ids"));
}

TEST(HostileVocab, EncoderIdOutOfRange) {
  EXPECT_TRUE(names(encoder_error("range.json", R"({"a": 0, "b": 5})"), "range.json",
                    "token \"b\": expected an integer id in 0..1, got 5"));
  EXPECT_TRUE(names(encoder_error("negative.json", R"({"a": -1})"), "negative.json",
                    "expected an integer id in 0..0, got -1"));
}

TEST(HostileVocab, EncoderIdDuplicated) {
  EXPECT_TRUE(names(encoder_error("twice.json", R"({"a": 0, "b": 0})"), "twice.json",
                    "token \"b\": id 0 is used twice"));
}

TEST(HostileVocab, MergeLineOfOneToken) {
  const fs::path dir = tests::scratch_dir("hostile_bpe");
  const std::string path = write_file(dir / "vocab.bpe", "#version: 0.2\nĠ t\nĠa\n");
  EXPECT_TRUE(names(error_of([&] { Tokenizer::load(kGpt2Dir + "/encoder.json", path); }),
                    path + ":3", "expected two tokens separated by one space, got \"Ġa\""));
}

TEST(HostileVocab, MissingFiles) {
  const fs::path dir = tests::scratch_dir("hostile_vocab_missing");
  const std::string encoder = (dir / "encoder.json").string();
  EXPECT_TRUE(names(error_of([&] { Tokenizer::load(encoder, kGpt2Dir + "/vocab.bpe"); }),
                    encoder, "cannot open"));
  const std::string merges = (dir / "vocab.bpe").string();
  EXPECT_TRUE(names(error_of([&] { Tokenizer::load(kGpt2Dir + "/encoder.json", merges); }),
                    merges, "cannot open"));
}

// ---------------------------------------------------------------------------
// JSONL corpora
// ---------------------------------------------------------------------------

fs::path jsonl_dir() {
  static const fs::path dir = tests::scratch_dir("hostile_jsonl");
  return dir;
}

// Reads every document of `path`; returns the error.
std::string read_error(const std::string& path) {
  return error_of([&] {
    TextReader reader(path);
    for (std::string document; reader.next(document);) {
    }
  });
}

std::string jsonl_error(const std::string& name, const std::string& content) {
  return read_error(write_file(jsonl_dir() / name, content));
}

int shell(const std::string& command) { return std::system(command.c_str()); }

TEST(HostileJsonl, LineThatIsNotAnObject) {
  EXPECT_TRUE(names(jsonl_error("array.jsonl", "{\"text\": \"a\"}\n[\"b\"]\n"), "array.jsonl:2",
                    "expected '{'"));
}

TEST(HostileJsonl, TextThatIsNotAString) {
  EXPECT_TRUE(names(jsonl_error("number.jsonl", "{\"text\": 5}\n"), "number.jsonl:1",
                    "member \"text\" is not a string"));
}

// An error, not a skipped line: a corpus in another schema would otherwise
// become zero documents without a word.
TEST(HostileJsonl, MissingTextIsAnError) {
  EXPECT_TRUE(names(jsonl_error("notext.jsonl", "{\"text\": \"a\"}\n{\"body\": \"b\"}\n"),
                    "notext.jsonl:2", "JSON object has no \"text\" member"));
}

TEST(HostileJsonl, InvalidEscape) {
  EXPECT_TRUE(names(jsonl_error("escape.jsonl", "{\"text\": \"a\\qb\"}\n"), "escape.jsonl:1",
                    "bad escape \\q"));
}

TEST(HostileJsonl, TruncatedXz) {
  const std::string path = (jsonl_dir() / "cut.jsonl.xz").string();
  ASSERT_EQ(shell("printf '{\"text\": \"some text\"}\\n' | xz -c | head -c 40 > " + path), 0);
  EXPECT_TRUE(names(read_error(path), path, "truncated xz data"));
}

TEST(HostileJsonl, TruncatedGzip) {
  const std::string path = (jsonl_dir() / "cut.jsonl.gz").string();
  ASSERT_EQ(shell("printf '{\"text\": \"some text\"}\\n' | gzip -c | head -c 20 > " + path), 0);
  EXPECT_TRUE(names(read_error(path), path, "truncated gzip data"));
}

TEST(HostileJsonl, GzThatIsNotGzip) {
  const std::string path = write_file(jsonl_dir() / "plain.jsonl.gz", "{\"text\": \"a\"}\n");
  EXPECT_TRUE(names(read_error(path), path, "corrupt gzip data: incorrect header check"));
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

// A tiny model and its optimizer, made as the trainer makes them.
struct Tiny {
  explicit Tiny(int64_t dim)
      : config(load_config({}, {"model.vocab_size=64", "model.layers=2", "model.heads=2",
                                "model.head_dim=8", "model.dim=" + std::to_string(dim),
                                "model.seq_len=16", "train.steps=10"})),
        model(config.model),
        optimizer(*model, config, nullptr) {}
  Config config;
  GPT model;
  Optimizer optimizer;
};

// A complete checkpoint of a tiny model after one optimizer step.
fs::path write_checkpoint(const std::string& name, int64_t dim = 16) {
  const fs::path run_dir = tests::scratch_dir("hostile_checkpoint_" + name);
  Tiny tiny(dim);
  for (auto& p : tiny.model->parameters()) p.mutable_grad() = torch::randn_like(p);
  tiny.optimizer.step(0);
  TrainerState state;
  state.step = 1;
  save_checkpoint(run_dir.string(), tiny.config, *tiny.model, tiny.optimizer, state, nullptr);
  return run_dir / "checkpoints" / "step_000001";
}

std::string resume_error(const fs::path& checkpoint) {
  Tiny tiny(16);
  return error_of([&] { load_checkpoint(checkpoint.string(), *tiny.model, tiny.optimizer); });
}

TEST(HostileCheckpoint, TheValidOneLoads) {
  EXPECT_EQ(resume_error(write_checkpoint("valid")), "");
}

TEST(HostileCheckpoint, MissingCompleteMarker) {
  const fs::path checkpoint = write_checkpoint("incomplete");
  fs::remove(checkpoint / "COMPLETE");
  EXPECT_TRUE(names(resume_error(checkpoint), checkpoint.string(),
                    "not a complete checkpoint (no COMPLETE file)"));
}

TEST(HostileCheckpoint, TruncatedModelFile) {
  const fs::path checkpoint = write_checkpoint("truncated");
  const fs::path model = checkpoint / "model.safetensors";
  fs::resize_file(model, fs::file_size(model) / 2);
  EXPECT_TRUE(names(resume_error(checkpoint), model.string(), "outside the data section"));
}

TEST(HostileCheckpoint, ModelOfAnotherShape) {
  const fs::path checkpoint = write_checkpoint("wide", 32);
  EXPECT_TRUE(names(resume_error(checkpoint), (checkpoint / "model.safetensors").string(),
                    "the model needs Float"));
}

TEST(HostileCheckpoint, MissingRankFile) {
  const fs::path checkpoint = write_checkpoint("norank");
  fs::remove(checkpoint / "rank0.safetensors");
  EXPECT_TRUE(names(resume_error(checkpoint), (checkpoint / "rank0.safetensors").string(),
                    "cannot open safetensors file"));
}

TEST(HostileCheckpoint, NonNumericStep) {
  const fs::path checkpoint = write_checkpoint("step");
  const std::string rank0 = (checkpoint / "rank0.safetensors").string();
  SafetensorsFile file = load_safetensors(rank0);
  file.metadata["step"] = "twelve";
  save_safetensors(rank0, {file.tensors.begin(), file.tensors.end()}, file.metadata);
  EXPECT_TRUE(names(resume_error(checkpoint), rank0, "metadata 'step' is not an integer: twelve"));
}

}  // namespace
