// What each fuzz target feeds its parser and which contract it checks (see
// targets.h). Inputs that parsers read from files are written to this
// process's scratch directory first.
#include "tests/fuzz/targets.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <typeinfo>
#include <utility>

#include "models/layer_patterns.h"
#include "tests/test_helpers.h"
#include "trainer/io/safetensors_header.h"
#include "trainer/config/config.h"
#include "trainer/data/data_loader.h"
#include "trainer/data/shard.h"
#include "trainer/data/text_input.h"
#include "trainer/data/tokenizer.h"
#include "trainer/base/json.h"

namespace muonrun::fuzz {
namespace {

const std::string kGpt2Dir = std::string(MUONRUN_SHARED_DIR) + "/data/gpt2";

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::abort();
}

// Runs `parse`: true if it returned, false if it threw E with a message that
// names one of `sources`. Anything else is a finding.
template <class E, class F>
bool accepts(const std::vector<std::string>& sources, F&& parse) {
  try {
    parse();
    return true;
  } catch (const E& e) {
    const std::string_view message = e.what();
    if (std::none_of(sources.begin(), sources.end(), [&](const std::string& source) {
          return message.find(source) != std::string_view::npos;
        }))
      finding("the error does not name " + sources.front() + ": " + e.what());
    return false;
  } catch (const std::exception& e) {
    finding(std::string("undocumented exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    finding("an exception not derived from std::exception");
  }
}

std::string scratch() {
  static const std::string dir = tests::scratch_dir("fuzz").string();
  return dir;
}

// `bytes` as the file `name` in the scratch directory; returns its path.
std::string save(const std::string& name, std::string_view bytes) {
  const std::string path = scratch() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) finding("cannot write the scratch file " + path);
  return path;
}

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer =
      Tokenizer::load(kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  return tokenizer;
}

// A run saves its config as config.yaml and compares it with the current one
// on resume, so an accepted config must read back from to_yaml() unchanged.
void check_round_trip(const Config& config) {
  const std::string yaml = to_yaml(config);
  Config back;
  try {
    apply_yaml(back, yaml, "to_yaml");
  } catch (const ConfigError& e) {
    finding(std::string("to_yaml() output does not load: ") + e.what() + "\n" + yaml);
  }
  if (flatten(back) != flatten(config)) finding("the config changes through to_yaml():\n" + yaml);
}

// quote() must turn any string into JSON that reads back as one string: the
// same string once invalid UTF-8 (which becomes U+FFFD) is out of it.
std::string quote_and_parse(const std::string& s) {
  const std::string quoted = json::quote(s);
  json::Value back;
  if (!accepts<json::ParseError>({"quote"}, [&] { back = json::parse(quoted, "quote"); }) ||
      !back.is_string())
    finding("quote() does not give a JSON string: " + quoted);
  return back.string;
}

void check_quote(const std::string& s) {
  const std::string valid_utf8 = quote_and_parse(s);
  if (quote_and_parse(valid_utf8) != valid_utf8)
    finding("quote() changes a valid UTF-8 string: " + json::quote(valid_utf8));
}

void check_values(const json::Value& v) {
  if (v.is_string()) check_quote(v.string);
  if (v.is_number()) {
    try {
      v.as_int64();
    } catch (const json::ParseError&) {
      // documented for non-integers; callers add the file name
    }
  }
  for (const auto& item : v.array) check_values(item);
  for (const auto& [name, member] : v.object) {
    check_quote(name);
    check_values(member);
  }
}

uint64_t little_endian_u64(std::string_view bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return n;
}

// What parse_safetensors_header promises about what it accepts.
void check_header(const SafetensorsHeader& header, uint64_t data_size) {
  std::set<std::string> names;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const SafetensorsEntry& t : header.tensors) {
    uint64_t bytes = safetensors_element_size(t.dtype);
    if (bytes == 0) finding("tensor '" + t.name + "' has dtype " + t.dtype);
    for (int64_t d : t.shape)
      if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes))
        finding("tensor '" + t.name + "' has an impossible shape");
    if (t.begin > t.end || t.end > data_size || t.end - t.begin != bytes)
      finding("tensor '" + t.name + "' has a range that does not fit its shape or the data");
    if (!names.insert(t.name).second) finding("tensor '" + t.name + "' appears twice");
    ranges.emplace_back(t.begin, t.end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) finding("accepted overlapping tensors");
}

// The per-layer patterns an accepted config holds, parsed as the packed
// recipes parse them when they build a model: each returns one entry per
// layer or throws ConfigError naming its key.
void check_model_patterns(const ModelConfig& m) {
  const auto per_layer = [&](const char* key, size_t n) {
    if (static_cast<int64_t>(n) != m.layers)
      finding(std::string(key) + " parsed into " + std::to_string(n) + " entries for " + std::to_string(m.layers) +
              " layers");
  };
  accepts<ConfigError>({"model.windows"}, [&] {
    per_layer("model.windows", parse_window_pattern(m.windows, m.layers, "model.windows").size());
  });
  accepts<ConfigError>({"model.value_embeds"}, [&] {
    per_layer("model.value_embeds", parse_value_embed_pattern(m.value_embeds, m.layers, "model.value_embeds").size());
  });
  accepts<ConfigError>({"model.mlps"}, [&] {
    per_layer("model.mlps", parse_mlp_pattern(m.mlps, m.layers, "model.mlps").size());
  });
  accepts<ConfigError>({"model.window_schedule"}, [&] {
    for (const int64_t blocks : parse_window_schedule(m.window_schedule, "model.window_schedule"))
      if (blocks < 1) finding("model.window_schedule accepted a window of " + std::to_string(blocks) + " blocks");
  });
  accepts<ConfigError>({"model.skips"}, [&] {
    for (const auto& skip : parse_skip_pattern(m.skips, m.layers, "model.skips"))
      if (skip.from < 0 || skip.from >= skip.to || skip.to >= m.layers)
        finding("model.skips accepted " + std::to_string(skip.from) + ">" + std::to_string(skip.to));
  });
}

}  // namespace

void config(std::string_view input) {
  const std::string text(input);
  Config from_file;
  if (accepts<ConfigError>({"fuzz.yaml"}, [&] { apply_yaml(from_file, text, "fuzz.yaml"); })) {
    check_round_trip(from_file);
    check_model_patterns(from_file.model);
  }
  Config from_override;
  if (accepts<ConfigError>({"--set "}, [&] { apply_override(from_override, text); })) {
    check_round_trip(from_override);
    check_model_patterns(from_override.model);
  }
}

void json_reader(std::string_view input) {
  json::Value doc;
  const bool parsed =
      accepts<json::ParseError>({"fuzz.json"}, [&] { doc = json::parse(input, "fuzz.json"); });
  std::string text;
  bool found = false;
  const bool extracted = accepts<json::ParseError>({"fuzz.json"}, [&] {
    found = json::extract_string_member(input, "text", "fuzz.json", text);
  });
  // extract_string_member reads the first "text" member, and must refuse
  // exactly what parse() refuses, non-objects and a non-string "text".
  const json::Value* member = parsed && doc.is_object() ? doc.find("text") : nullptr;
  const bool should_extract = parsed && doc.is_object() && (!member || member->is_string());
  if (extracted != should_extract)
    finding(std::string("extract_string_member ") + (extracted ? "accepts" : "refuses") +
            " what parse() " + (should_extract ? "accepts" : "refuses"));
  if (extracted && (found != (member != nullptr) || (member && text != member->string)))
    finding("extract_string_member and parse() disagree on \"text\"");
  if (parsed) check_values(doc);
}

void text_input(std::string_view input) {
  if (input.empty()) return;
  static const char* const kNames[] = {"fuzz.jsonl", "fuzz.jsonl.gz", "fuzz.jsonl.xz", "fuzz.txt"};
  const std::string name = kNames[static_cast<unsigned char>(input[0]) % 4];
  const std::string_view content = input.substr(1);
  const std::string path = save(name, content);
  accepts<std::runtime_error>({path}, [&] {
    TextReader reader(path);
    std::string document;
    while (reader.next(document)) {
      if (reader.bytes_read() > content.size()) finding("bytes_read() beyond the file's size");
      if (name == "fuzz.txt" && document != content) finding("a .txt document is not the file");
    }
  });
}

void shard(std::string_view input) {
  const std::string path = save("fuzz_shard_0.bin", input);
  std::vector<uint16_t> tokens;
  const bool valid = accepts<std::runtime_error>({path}, [&] { tokens = read_shard(path); });
  const auto token_count = static_cast<int64_t>(tokens.size());
  if (valid && kShardHeaderBytes + 2 * token_count != static_cast<int64_t>(input.size()))
    finding("read_shard() returned " + std::to_string(tokens.size()) + " tokens from " +
            std::to_string(input.size()) + " bytes");

  constexpr int64_t kMicroBatch = 2, kSeqLen = 3, kBatch = kMicroBatch * kSeqLen;
  constexpr int64_t kVocab = Tokenizer::kEndOfText + 1;
  std::optional<DataLoader> loader;
  const bool loads = accepts<std::runtime_error>({scratch()}, [&] {
    loader.emplace(scratch() + "/fuzz_shard_*.bin", kMicroBatch, kSeqLen, 0, 1, kVocab);
  });
  if (loads != (valid && token_count >= kBatch + 1))
    finding(std::string("DataLoader ") + (loads ? "accepts" : "refuses") + " a shard of " +
            std::to_string(tokens.size()) + " tokens that read_shard() " +
            (valid ? "accepts" : "refuses"));
  if (!loads) return;
  std::vector<int64_t> batch(kBatch + 1);
  for (int i = 0; i < 4; ++i) {
    const int64_t offset = loader->position().offset;
    const auto window = tokens.begin() + offset;
    const bool in_vocab = std::all_of(window, window + kBatch + 1,
                                      [](uint16_t token) { return token < kVocab; });
    if (accepts<std::runtime_error>({path}, [&] { loader->next_batch(batch.data()); }) !=
        in_vocab)
      finding("next_batch() and the vocabulary disagree at offset " + std::to_string(offset));
    if (!in_vocab) return;
    if (!std::equal(batch.begin(), batch.end(), window))
      finding("a batch is not the shard's tokens at offset " + std::to_string(offset));
    loader->restore(loader->position());
  }
}

void tokenizer(std::string_view input) {
  const std::vector<uint16_t> tokens = gpt2().encode(input);
  if (gpt2().decode(tokens) != input)
    finding("decode(encode(x)) != x for x = " + json::quote(input));
  const size_t from = input.empty() ? 0 : static_cast<unsigned char>(input[0]) % input.size();
  const size_t cut = find_safe_split(input, from);
  if (cut < from || cut > input.size()) finding("find_safe_split() out of range");
  std::vector<uint16_t> pieces = gpt2().encode(input.substr(0, cut));
  gpt2().encode(input.substr(cut), pieces);
  if (pieces != tokens)
    finding("cutting at byte " + std::to_string(cut) + " changes the tokens of " +
            json::quote(input));
}

void encoder_json(std::string_view input) {
  const std::string encoder = save("encoder.json", input), merges = kGpt2Dir + "/vocab.bpe";
  accepts<std::runtime_error>({encoder, merges}, [&] { Tokenizer::load(encoder, merges); });
}

void vocab_bpe(std::string_view input) {
  const std::string encoder = kGpt2Dir + "/encoder.json", merges = save("vocab.bpe", input);
  std::optional<Tokenizer> loaded;
  if (!accepts<std::runtime_error>({merges}, [&] { loaded = Tokenizer::load(encoder, merges); }))
    return;
  // Any merge list, even one GPT-2 would never use, must keep text lossless.
  if (loaded->decode(loaded->encode(input)) != input)
    finding("with these merges decode(encode(x)) != x for x = the vocab.bpe itself");
}

void safetensors_header(std::string_view input) {
  if (input.size() < 8) return;
  const uint64_t data_size = little_endian_u64(input);
  SafetensorsHeader header;
  if (accepts<std::runtime_error>({"fuzz.safetensors"}, [&] {
        header = parse_safetensors_header(input.substr(8), data_size, "fuzz.safetensors");
      }))
    check_header(header, data_size);
}

const std::vector<Target>& all_targets() {
  static const std::vector<Target> targets = {
      {"config", config},
      {"json_reader", json_reader},
      {"text_input", text_input},
      {"shard", shard},
      {"tokenizer", tokenizer},
      {"encoder_json", encoder_json},
      {"vocab_bpe", vocab_bpe},
      {"safetensors_header", safetensors_header},
  };
  return targets;
}

}  // namespace muonrun::fuzz
