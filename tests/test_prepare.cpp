// `prepare` end to end: every input format, sharding, thread-count
// independence, the validation split, input errors, and the whole tool
// against an independent Python re-implementation of OpenAI's encoder.py.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/test_helpers.h"
#include "trainer/data/prepare.h"
#include "trainer/data/shard.h"
#include "trainer/data/text_input.h"
#include "trainer/data/tokenizer.h"
#include "trainer/base/json.h"

using namespace muonrun;
using muonrun::tests::error_of;
using muonrun::tests::scratch_dir;
namespace fs = std::filesystem;

namespace {

const std::string kShared = MUONRUN_SHARED_DIR;
const std::string kVocabDir = kShared + "/data/gpt2";

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer =
      Tokenizer::load(kVocabDir + "/encoder.json", kVocabDir + "/vocab.bpe");
  return tokenizer;
}

std::string write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

int run(const std::string& command) {
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// All shards of one split, in order, concatenated.
std::vector<uint16_t> read_split(const fs::path& dir, const std::string& split) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(split + "_", 0) == 0) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<uint16_t> all;
  for (const std::string& f : files) {
    std::vector<uint16_t> t = read_shard(f);
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

// What prepare must produce: <|endoftext|> then the tokens of each document.
std::vector<uint16_t> expected_tokens(const std::vector<std::string>& documents) {
  std::vector<uint16_t> out;
  for (const std::string& d : documents) {
    out.push_back(Tokenizer::kEndOfText);
    gpt2().encode(d, out);
  }
  return out;
}

std::string jsonl(const std::vector<std::string>& documents) {
  std::string text;
  for (const std::string& d : documents) text += "{\"id\": 1, \"text\": " + json::quote(d) + "}\n";
  return text;
}

PrepareOptions options_for(const fs::path& dir, std::vector<std::string> inputs) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = (dir / "out").string();
  o.vocab_dir = kVocabDir;
  return o;
}

}  // namespace

TEST(Prepare, EveryInputFormatGivesTheDocumentTokens) {
  fs::path dir = scratch_dir("formats");
  const std::string txt =
      "Hello world.\nSecond line, \xC3\xBCn\xC3\xAF"
      "code \xF0\x9F\x8C\x8D\n";
  const std::vector<std::string> docs = {"First doc's text.", "", "tab\there \"quoted\"\n\nend",
                                         "<|endoftext|> is plain text here"};
  write_file(dir / "a.txt", txt);
  write_file(dir / "b.jsonl", jsonl({docs[0], docs[1]}) + "\n  \n" + jsonl({docs[2]}));
  write_file(dir / "c.jsonl", jsonl({docs[3]}));
  // .xz and .gz made by the standard tools; the .gz holds two gzip members.
  ASSERT_EQ(run("xz -c " + (dir / "a.txt").string() + " > " + (dir / "a.txt.xz").string()), 0);
  ASSERT_EQ(
      run("gzip -c " + (dir / "b.jsonl").string() + " > " + (dir / "b.jsonl.gz").string() +
          " && gzip -c " + (dir / "c.jsonl").string() + " >> " + (dir / "b.jsonl.gz").string()),
      0);
  ASSERT_EQ(run("xz -c " + (dir / "c.jsonl").string() + " > " + (dir / "c.jsonl.xz").string()), 0);

  std::vector<std::string> inputs = {"a.txt", "b.jsonl", "a.txt.xz", "b.jsonl.gz", "c.jsonl.xz"};
  for (auto& i : inputs) i = (dir / i).string();
  PrepareOptions o = options_for(dir, inputs);
  o.shard_tokens = 16;  // documents run on across shard boundaries
  o.threads = 2;
  PrepareSummary s = run_prepare(o);

  std::vector<std::string> all = {txt,     docs[0], docs[1], docs[2], txt,
                                  docs[0], docs[1], docs[2], docs[3], docs[3]};
  std::vector<uint16_t> expected = expected_tokens(all);
  EXPECT_EQ(read_split(o.out_dir, "train"), expected);
  EXPECT_EQ(s.documents, 10);
  EXPECT_EQ(s.train_tokens, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(s.train_shards, static_cast<int>((expected.size() + 15) / 16));
  EXPECT_EQ(s.val_tokens, 0);
  EXPECT_EQ(s.val_shards, 0);
  EXPECT_TRUE(fs::exists(fs::path(o.out_dir) / "train_000000.bin"));
  EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / "val_000000.bin"));
}

TEST(Prepare, OutputDoesNotDependOnThreadCount) {
  fs::path dir = scratch_dir("threads");
  // A 1 MB document (cut into pieces for the workers) and many small ones.
  std::string shakespeare = kShared + "/data/tinyshakespeare.txt";
  std::vector<std::string> docs;
  std::mt19937 rng(3);
  for (int i = 0; i < 3000; ++i) docs.push_back(std::string(rng() % 1000, 'a' + i % 26) + " x\n");
  std::string many = write_file(dir / "many.jsonl", jsonl(docs));

  std::vector<std::string> shards;
  for (int threads : {1, 3}) {
    PrepareOptions o = options_for(dir, {shakespeare, many});
    o.out_dir = (dir / ("out" + std::to_string(threads))).string();
    o.threads = threads;
    o.shard_tokens = 100000;
    run_prepare(o);
    std::string bytes;
    for (int k = 0; fs::exists(fs::path(o.out_dir) / ("train_00000" + std::to_string(k) + ".bin"));
         ++k)
      bytes += tests::read_file(fs::path(o.out_dir) / ("train_00000" + std::to_string(k) + ".bin"));
    shards.push_back(bytes);
  }
  EXPECT_GT(shards[0].size(), 1024u * 4);
  EXPECT_TRUE(shards[0] == shards[1]) << "1 and 3 threads wrote different shards";

  std::string text = tests::read_file(shakespeare);
  std::vector<std::string> all = {text};
  all.insert(all.end(), docs.begin(), docs.end());
  EXPECT_EQ(read_split(dir / "out1", "train"), expected_tokens(all));
}

TEST(Prepare, ValidationSplit) {
  fs::path dir = scratch_dir("val");
  std::vector<std::string> docs = {"one two three four", "five six seven", "eight nine ten"};
  std::string in = write_file(dir / "in.jsonl", jsonl(docs));
  std::vector<uint16_t> all = expected_tokens(docs);

  // --val-tokens: the first N tokens of the stream, even mid-document.
  PrepareOptions o = options_for(dir, {in});
  o.val_tokens = 6;
  o.shard_tokens = 4;
  PrepareSummary s = run_prepare(o);
  EXPECT_EQ(read_split(o.out_dir, "val"), std::vector<uint16_t>(all.begin(), all.begin() + 6));
  EXPECT_EQ(read_split(o.out_dir, "train"), std::vector<uint16_t>(all.begin() + 6, all.end()));
  EXPECT_EQ(s.val_tokens, 6);
  EXPECT_EQ(s.val_shards, 2);
  EXPECT_EQ(s.train_tokens, static_cast<int64_t>(all.size()) - 6);

  // --val-input: kept apart whole.
  std::string val = write_file(dir / "val.txt", "held out");
  o = options_for(dir, {in});
  o.out_dir = (dir / "out2").string();
  o.val_inputs = {val};
  s = run_prepare(o);
  EXPECT_EQ(read_split(o.out_dir, "val"), expected_tokens({"held out"}));
  EXPECT_EQ(read_split(o.out_dir, "train"), all);

  o.val_tokens = 5;
  EXPECT_NE(error_of([&] { run_prepare(o); }).find("either --val-input or --val-tokens"),
            std::string::npos);
}

TEST(Prepare, InputErrorsNameFileAndLine) {
  fs::path dir = scratch_dir("errors");
  std::string bad = write_file(dir / "bad.jsonl", jsonl({"fine"}) + "\n{\"text\": \"x\",}\n");
  std::string e = error_of([&] { run_prepare(options_for(dir, {bad})); });
  EXPECT_NE(e.find("bad.jsonl:3: invalid JSON at byte 13: expected a member name"),
            std::string::npos)
      << e;

  std::string no_text = write_file(dir / "notext.jsonl", "{\"title\": \"t\"}\n");
  e = error_of([&] { run_prepare(options_for(dir, {no_text})); });
  EXPECT_NE(e.find("notext.jsonl:1: JSON object has no \"text\" member"), std::string::npos) << e;

  std::string not_string = write_file(dir / "num.jsonl", "{\"text\": 5}\n");
  e = error_of([&] { run_prepare(options_for(dir, {not_string})); });
  EXPECT_NE(e.find("num.jsonl:1: invalid JSON at byte 9: member \"text\" is not a string"),
            std::string::npos)
      << e;

  std::string corrupt = write_file(dir / "corrupt.txt.xz", "definitely not xz");
  e = error_of([&] { run_prepare(options_for(dir, {corrupt})); });
  EXPECT_NE(e.find("corrupt.txt.xz: not xz data"), std::string::npos) << e;

  ASSERT_EQ(run("printf 'some text' | gzip -c | head -c 15 > " + (dir / "cut.txt.gz").string()), 0);
  e = error_of([&] { run_prepare(options_for(dir, {(dir / "cut.txt.gz").string()})); });
  EXPECT_NE(e.find("cut.txt.gz: truncated gzip data"), std::string::npos) << e;

  e = error_of([&] { run_prepare(options_for(dir, {(dir / "x.csv").string()})); });
  EXPECT_NE(e.find("x.csv: unsupported input"), std::string::npos) << e;
  e = error_of([&] { run_prepare(options_for(dir, {(dir / "missing.txt").string()})); });
  EXPECT_NE(e.find("missing.txt: no such file"), std::string::npos) << e;

  // A second run into the same directory would mix old and new shards.
  std::string ok = write_file(dir / "ok.txt", "fine");
  run_prepare(options_for(dir, {ok}));
  e = error_of([&] { run_prepare(options_for(dir, {ok})); });
  EXPECT_NE(e.find("already holds shards (train_000000.bin)"), std::string::npos) << e;
}

TEST(Prepare, TextReaderStreamsLinesLongerThanItsBuffer) {
  fs::path dir = scratch_dir("long");
  std::string doc(5 << 20, 'y');  // longer than the 1 MiB read chunk
  std::string path = write_file(dir / "long.jsonl", jsonl({doc, "short"}));
  TextReader reader(path);
  std::string text;
  ASSERT_TRUE(reader.next(text));
  EXPECT_EQ(text, doc);
  ASSERT_TRUE(reader.next(text));
  EXPECT_EQ(text, "short");
  EXPECT_FALSE(reader.next(text));
  EXPECT_EQ(reader.bytes_read(), fs::file_size(path));
}

// The whole tool against tests/gpt2_reference_encoder.py, a plain Python
// re-implementation of OpenAI's encoder.py (with the `regex` module, as the
// original): real books plus synthetic text full of the regex's edge cases.
TEST(Prepare, MatchesPythonReferenceEncoder) {
  ASSERT_EQ(run("python3 -c 'import regex' 2>/dev/null"), 0)
      << "this test needs python3 with the `regex` module: install python3-regex "
         "(Debian/Ubuntu) or `pip install regex`";
  fs::path dir = scratch_dir("python");
  std::string input = (dir / "input.jsonl").string();
  ASSERT_EQ(run("xz -dc " + kShared + "/data/gutenberg/val.jsonl.xz | head -n 2 > " + input), 0);
  ASSERT_GT(fs::file_size(input), 200000u);

  const std::vector<std::string> units = {"'s",
                                          "'t",
                                          "'re",
                                          "'ve",
                                          "'m",
                                          "'ll",
                                          "'d",
                                          "'S",
                                          "'",
                                          "\"",
                                          " ",
                                          "  ",
                                          "\t",
                                          "\n",
                                          "\r\n",
                                          "\v",
                                          "\f",
                                          "\x1c",
                                          "\xC2\x85",
                                          "\xC2\xA0",
                                          "\xE1\xA0\x8E",
                                          "\xE2\x80\x89",
                                          "\xE3\x80\x80",
                                          "\xE2\x80\xA8",
                                          "a",
                                          "Z",
                                          "word",
                                          " word",
                                          "\xC3\xA9",
                                          "\xC3\x9F",
                                          "\xE6\xBC\xA2",
                                          "\xED\x95\x9C",
                                          "\xD9\x82",
                                          "1",
                                          "42",
                                          "\xD9\xA3",
                                          "\xC2\xBD",
                                          "\xE2\x85\xAB",
                                          "\xC2\xB2",
                                          "!",
                                          "?",
                                          "...",
                                          "\xE2\x80\x94",
                                          "\xF0\x9F\x98\x80",
                                          "\xF0\x9F\x87\xBA\xF0\x9F\x87\xB8",
                                          "\xCC\x81",
                                          "\xE2\x80\x8D",
                                          "\xEF\xBB\xBF",
                                          std::string(1, '\0'),
                                          "<|endoftext|>"};
  std::mt19937 rng(11);
  std::vector<std::string> synthetic;
  for (int i = 0; i < 400; ++i) {
    std::string s;
    for (int k = rng() % 60; k > 0; --k) s += units[rng() % units.size()];
    synthetic.push_back(s);
  }
  std::ofstream(input, std::ios::app) << jsonl(synthetic);

  fs::path out = dir / "out";
  ASSERT_EQ(
      run(std::string(MUONRUN_BINARY) + " prepare --input " + input + " --out " + out.string() +
          " --vocab " + kVocabDir + " --threads 2 > " + (dir / "log.txt").string() + " 2>&1"),
      0)
      << tests::read_file(dir / "log.txt");
  fs::path ref = dir / "reference.txt";
  ASSERT_EQ(run("python3 " + std::string(MUONRUN_SOURCE_DIR) +
                "/tests/gpt2_reference_encoder.py --vocab " + kVocabDir + " " + input + " > " +
                ref.string()),
            0);

  std::vector<uint16_t> expected;
  std::istringstream ids(tests::read_file(ref));
  for (int id; ids >> id;) expected.push_back(static_cast<uint16_t>(id));
  std::vector<uint16_t> ours = read_split(out, "train");
  ASSERT_GT(expected.size(), 100000u);
  ASSERT_EQ(ours.size(), expected.size());
  auto diff = std::mismatch(ours.begin(), ours.end(), expected.begin());
  EXPECT_TRUE(diff.first == ours.end())
      << "first difference at token " << diff.first - ours.begin() << ": ours " << *diff.first
      << ", reference " << *diff.second;
}

// --split-docs: each paragraph of a .txt file (lines up to a blank line) is a
// document; .jsonl documents are left whole.
TEST(Prepare, SplitDocsMakesADocumentOfEachParagraph) {
  fs::path dir = scratch_dir("split_docs");
  const std::string text =
      "\n \nFirst: line one\nline two\n\n\n \t \nSecond\r\nstill second\r\n\r\n"
      "  indented third\nthird, no newline at the end";
  const std::vector<std::string> paragraphs = {"First: line one\nline two",
                                               "Second\r\nstill second",
                                               "  indented third\nthird, no newline at the end"};
  write_file(dir / "a.txt", text);
  ASSERT_EQ(run("gzip -c " + (dir / "a.txt").string() + " > " + (dir / "a.txt.gz").string()), 0);
  const std::string whole = "one\n\ntwo\n";
  write_file(dir / "b.jsonl", jsonl({whole}));
  write_file(dir / "blank.txt", "\n \n\n");
  PrepareOptions o = options_for(dir, {(dir / "a.txt").string(), (dir / "b.jsonl").string(),
                                       (dir / "blank.txt").string(), (dir / "a.txt.gz").string()});
  o.split_docs = true;
  PrepareSummary s = run_prepare(o);
  std::vector<std::string> all = paragraphs;
  all.push_back(whole);
  all.insert(all.end(), paragraphs.begin(), paragraphs.end());
  EXPECT_EQ(read_split(o.out_dir, "train"), expected_tokens(all));
  EXPECT_EQ(s.documents, 7);
}

// The flag through the command line, on Shakespeare, against the paragraphs
// found here line by line.
TEST(Prepare, SplitDocsFromTheCommandLine) {
  fs::path dir = scratch_dir("split_docs_cli");
  const std::string shakespeare = kShared + "/data/tinyshakespeare.txt";
  std::vector<std::string> paragraphs(1);
  std::istringstream lines(tests::read_file(shakespeare));
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos)
      paragraphs.back() += (paragraphs.back().empty() ? "" : "\n") + line;
    else if (!paragraphs.back().empty())
      paragraphs.emplace_back();
  }
  if (paragraphs.back().empty()) paragraphs.pop_back();
  ASSERT_GT(paragraphs.size(), 7000u);

  fs::path out = dir / "out";
  ASSERT_EQ(run(std::string(MUONRUN_BINARY) + " prepare --split-docs --input " + shakespeare +
                " --out " + out.string() + " --vocab " + kVocabDir + " > " +
                (dir / "log.txt").string() + " 2>&1"),
            0)
      << tests::read_file(dir / "log.txt");
  EXPECT_EQ(read_split(out, "train"), expected_tokens(paragraphs));
}
