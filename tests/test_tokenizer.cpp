// The GPT-2 tokenizer against tiktoken's r50k_base golden vectors, lossless
// round trips on arbitrary bytes, safe split points, threads, and the errors
// for broken vocabulary files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/test_helpers.h"
#include "trainer/data/tokenizer.h"

using namespace muonrun;
using muonrun::tests::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kVocabDir = std::string(MUONRUN_SHARED_DIR) + "/data/gpt2";

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer =
      Tokenizer::load(kVocabDir + "/encoder.json", kVocabDir + "/vocab.bpe");
  return tokenizer;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Vector {
  std::string encoding, sample;
  std::vector<uint16_t> encoded;
};

// Blocks of "EncodingName: ...", "Sample: <text>", "Encoded: [ids]". A sample
// may run over several lines: it ends where the block's "\nEncoded: [" starts.
std::vector<Vector> read_vectors(const std::string& path) {
  const std::string text = read_text(path);
  const std::string name_tag = "EncodingName: ", sample_tag = "Sample: ",
                    encoded_tag = "\nEncoded: [";
  std::vector<size_t> starts;
  for (size_t p = 0; (p = text.find(name_tag, p)) != std::string::npos; p += name_tag.size())
    if (p == 0 || text[p - 1] == '\n') starts.push_back(p);
  std::vector<Vector> vectors;
  for (size_t i = 0; i < starts.size(); ++i) {
    std::string block =
        text.substr(starts[i], (i + 1 < starts.size() ? starts[i + 1] : text.size()) - starts[i]);
    Vector v;
    size_t name_end = block.find('\n');
    v.encoding = block.substr(name_tag.size(), name_end - name_tag.size());
    if (block.compare(name_end + 1, sample_tag.size(), sample_tag) != 0)
      throw std::runtime_error(path + ": block " + std::to_string(i) + " has no Sample line");
    size_t sample_begin = name_end + 1 + sample_tag.size();
    size_t encoded = block.rfind(encoded_tag);
    size_t close = block.find(']', encoded);
    if (encoded == std::string::npos || encoded < sample_begin - 1 || close == std::string::npos)
      throw std::runtime_error(path + ": block " + std::to_string(i) + " has no Encoded list");
    v.sample = block.substr(sample_begin, encoded - sample_begin);
    std::stringstream ids(
        block.substr(encoded + encoded_tag.size(), close - encoded - encoded_tag.size()));
    for (std::string id; std::getline(ids, id, ',');) v.encoded.push_back(std::stoi(id));
    vectors.push_back(std::move(v));
  }
  return vectors;
}

std::string write_temp(const std::string& name, const std::string& text) {
  static const fs::path dir = tests::scratch_dir("tokenizer");
  fs::path path = dir / name;
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

TEST(Tokenizer, MatchesTiktokenR50kVectors) {
  const std::string path = kVocabDir + "/r50k-test-vectors.txt";
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: the golden vectors must be there";
  int checked = 0;
  for (const Vector& v : read_vectors(path)) {
    if (v.encoding != "r50k_base") continue;
    EXPECT_EQ(gpt2().encode(v.sample), v.encoded) << "sample: " << v.sample;
    EXPECT_EQ(gpt2().decode(v.encoded), v.sample);
    ++checked;
  }
  EXPECT_EQ(checked, 64) << "expected 64 r50k_base vectors in " << path;
}

TEST(Tokenizer, KnownFacts) {
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().token_bytes(Tokenizer::kEndOfText), "<|endoftext|>");
  EXPECT_EQ(gpt2().encode("Hello world"), (std::vector<uint16_t>{15496, 995}));
  // "<|endoftext|>" in text is ordinary text.
  std::vector<uint16_t> eot = gpt2().encode("<|endoftext|>");
  EXPECT_GT(eot.size(), 1u);
  EXPECT_EQ(std::count(eot.begin(), eot.end(), Tokenizer::kEndOfText), 0);
  EXPECT_THROW(gpt2().token_bytes(50257), std::out_of_range);
  EXPECT_THROW(gpt2().token_bytes(-1), std::out_of_range);
  EXPECT_TRUE(gpt2().encode("").empty());
}

TEST(Tokenizer, RoundTripsArbitraryBytes) {
  std::mt19937 rng(1234);
  // Biased towards what trips byte-level tokenizers: NULs, lone
  // continuation bytes, cut-off sequences, spaces, apostrophes.
  const char kSpecials[] = "\0 \n\t'sa1\x80\xBF\xC3\xE2\xF0\xFF";
  const std::string specials(kSpecials, sizeof kSpecials - 1);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s;
    size_t len = rng() % 64;
    for (size_t i = 0; i < len; ++i)
      s += rng() % 2 ? static_cast<char>(rng() % 256) : specials[rng() % specials.size()];
    ASSERT_EQ(gpt2().decode(gpt2().encode(s)), s) << "trial " << trial;
  }
}

TEST(Tokenizer, RoundTripsRandomUnicode) {
  std::mt19937 rng(99);
  const char32_t ranges[][2] = {
      {0x20, 0x7E},     {0x09, 0x0D},       {0x80, 0x24F},    {0x0300, 0x036F},   {0x0400, 0x04FF},
      {0x1680, 0x1680}, {0x180E, 0x180E},   {0x2000, 0x206F}, {0x3000, 0x30FF},   {0x4E00, 0x4FFF},
      {0xAC00, 0xAD00}, {0x1F300, 0x1F64F}, {0xE000, 0xE0FF}, {0x10000, 0x10FFFF}};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s;
    size_t len = rng() % 40;
    for (size_t i = 0; i < len; ++i) {
      const auto& r = ranges[rng() % std::size(ranges)];
      char32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      s += utf8(cp);
    }
    ASSERT_EQ(gpt2().decode(gpt2().encode(s)), s) << "trial " << trial;
  }
}

TEST(Tokenizer, HostileLongInputStaysFastAndLossless) {
  // One pre-token of a megabyte: quadratic BPE would take hours.
  std::mt19937 rng(5);
  std::string letters, bytes;
  for (int i = 0; i < 1 << 20; ++i) letters += static_cast<char>('a' + rng() % 26);
  for (int i = 0; i < 1 << 20; ++i) bytes += static_cast<char>(rng() % 256);
  for (const std::string& s : {letters, bytes, std::string(1 << 20, ' '),
                               std::string(1 << 20, '\xFF'), std::string(1 << 20, 'a')}) {
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(gpt2().decode(gpt2().encode(s)), s);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10);
  }
}

TEST(Tokenizer, SafeSplitsDoNotChangeTokens) {
  const std::string text = read_text(std::string(MUONRUN_SHARED_DIR) + "/data/tinyshakespeare.txt");
  const std::vector<uint16_t> whole = gpt2().encode(text);
  int splits = 0;
  for (size_t from = 0; from < text.size(); from += 9973) {
    size_t p = find_safe_split(text, from);
    ASSERT_GE(p, from);
    if (p == text.size()) continue;
    std::vector<uint16_t> parts = gpt2().encode(std::string_view(text).substr(0, p));
    gpt2().encode(std::string_view(text).substr(p), parts);
    ASSERT_EQ(parts, whole) << "split at " << p;
    ++splits;
  }
  EXPECT_GT(splits, 50);
  // Places where a cut would change the tokens are never chosen.
  EXPECT_EQ(find_safe_split("a \nb", 0), 4u);        // space before the newline
  EXPECT_EQ(find_safe_split("a\n\nb", 0), 4u);       // run of newlines
  EXPECT_EQ(find_safe_split("a\n b", 0), 4u);        // space after
  EXPECT_EQ(find_safe_split("\xC3\xA9\nb", 0), 4u);  // non-ASCII before
  EXPECT_EQ(find_safe_split("a\nb", 0), 2u);
  EXPECT_EQ(find_safe_split("a\nb\nc", 3), 4u);
}

TEST(Tokenizer, EncodesConcurrently) {
  const std::string text = read_text(std::string(MUONRUN_SHARED_DIR) + "/data/tinyshakespeare.txt");
  const std::vector<uint16_t> expected = gpt2().encode(text);
  std::vector<std::vector<uint16_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& r : results) threads.emplace_back([&] { r = gpt2().encode(text); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_EQ(r, expected);
}

TEST(Tokenizer, BrokenEncoderJsonNamesTheProblem) {
  const std::string merges = write_temp("ok.bpe", "#version: 0.2\n");
  auto load = [&](const std::string& encoder_text) {
    std::string path = write_temp("encoder.json", encoder_text);
    return error_of([&] { Tokenizer::load(path, merges); });
  };
  auto has = [](const std::string& e, const std::string& part) {
    return e.find(part) != std::string::npos;
  };
  std::string e = error_of([&] { Tokenizer::load("/nonexistent/encoder.json", merges); });
  EXPECT_TRUE(has(e, "/nonexistent/encoder.json: cannot open")) << e;
  e = load("{\"a\": 0,");
  EXPECT_TRUE(has(e, "encoder.json: invalid JSON at byte 8")) << e;
  e = load("[1, 2]");
  EXPECT_TRUE(has(e, "encoder.json: expected a JSON object")) << e;
  e = load(R"({"a": 0, "b": "1"})");
  EXPECT_TRUE(has(e, "token \"b\": expected an integer id in 0..1, got \"1\"")) << e;
  e = load(R"({"a": 0, "b": 2})");
  EXPECT_TRUE(has(e, "token \"b\": expected an integer id in 0..1, got 2")) << e;
  e = load(R"({"a": 0, "b": 0.5})");
  EXPECT_TRUE(has(e, "expected an integer id in 0..1, got 0.5")) << e;
  e = load(R"({"a": 0, "b": 0})");
  EXPECT_TRUE(has(e, "token \"b\": id 0 is used twice")) << e;
  e = load(R"({"a": 0, "a": 1})");
  EXPECT_TRUE(has(e, "token \"a\" appears twice")) << e;
  e = load(R"({"a b": 0})");
  EXPECT_TRUE(has(e, "has U+0020, which is not in GPT-2's byte alphabet")) << e;
  e = load(R"({"": 0})");
  EXPECT_TRUE(has(e, "encoder.json: empty token")) << e;
  e = load(R"({"a": 0})");
  EXPECT_TRUE(has(e, "id 50256 must be <|endoftext|>")) << e;
  // Dense ids with <|endoftext|> last, but no one-byte tokens.
  std::string no_bytes = "{";
  for (int i = 0; i < Tokenizer::kEndOfText; ++i)
    no_bytes += "\"x" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
  no_bytes += "\"<|endoftext|>\": 50256}";
  e = load(no_bytes);
  EXPECT_TRUE(has(e, "encoder.json: no token for byte 0")) << e;
}

TEST(Tokenizer, BrokenVocabBpeNamesFileAndLine) {
  const std::string encoder = kVocabDir + "/encoder.json";
  auto load = [&](const std::string& bpe_text) {
    std::string path = write_temp("vocab.bpe", bpe_text);
    return error_of([&] { Tokenizer::load(encoder, path); });
  };
  struct Case {
    std::string text, expected;
  };
  const Case cases[] = {
      {"", "vocab.bpe: empty file"},
      {"Ġ t\n", "vocab.bpe:1: expected the \"#version\" header line"},
      {"#version: 0.2\nĠt\n", "vocab.bpe:2: expected two tokens separated by one space"},
      {"#version: 0.2\nĠ t\nĠ  a\n", "vocab.bpe:3: expected two tokens separated by one space"},
      {"#version: 0.2\nĠ t\nĠ\x01 a\n", "vocab.bpe:3: token \"Ġ\\u0001\" has U+0001"},
      {"#version: 0.2\nĠ t\n\nĠtttttttttt x\n",
       "vocab.bpe:4: left token \"Ġtttttttttt\" is not in the encoder.json"},
      {"#version: 0.2\nq zzzzzzzzzz\n", "vocab.bpe:2: right token \"zzzzzzzzzz\" is not in"},
      {"#version: 0.2\nq x\n", "vocab.bpe:2: merged token \"qx\" is not in the encoder.json"},
      {"#version: 0.2\nĠ t\nĠ t\n", "vocab.bpe:3: duplicate merge \"Ġ t\""},
  };
  for (const Case& c : cases) {
    std::string e = load(c.text);
    EXPECT_NE(e.find(c.expected), std::string::npos) << "got: " << e << "\nwant: " << c.expected;
  }
  // CRLF line ends and blank lines are accepted.
  EXPECT_EQ(load("#version: 0.2\r\nĠ t\r\n\r\nĠ a\r\n"), "");
}
