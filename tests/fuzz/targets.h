// The body of each fuzz target, shared by the libFuzzer binaries (one per
// target, tests/fuzz/fuzz_<name>.cpp, built with clang) and the corpus replay
// of the normal test suite (tests/test_fuzz_corpus.cpp), so that every case a
// fuzzer found stays a regression test where there is no clang.
//
// A target returns when the parser accepted its input, or refused it with the
// documented exception and a message naming the input. Anything else (another
// exception type, a message that does not name the file, a result that breaks
// the parser's contract) is a finding: the target prints it and aborts, which
// libFuzzer records as a crash.
#pragma once

#include <string_view>
#include <vector>

namespace muonrun::fuzz {

// apply_yaml() on the input as a config file, apply_override() on it as one
// `--set` assignment; an accepted config must survive to_yaml() unchanged,
// and its per-layer model patterns parse or are refused naming their key.
void config(std::string_view input);
// json::parse() and extract_string_member() must agree; quote() must give JSON.
void json_reader(std::string_view input);
// TextReader on input[1:] saved as .jsonl, .jsonl.gz, .jsonl.xz or .txt
// (chosen by input[0]).
void text_input(std::string_view input);
// The input as a shard file: ShardReader, then a DataLoader over it whose
// batches must be the shard's tokens, or refused for ids outside GPT-2's
// vocabulary.
void shard(std::string_view input);
// encode() of arbitrary bytes must decode to them, and a find_safe_split()
// cut must not change the tokens.
void tokenizer(std::string_view input);
// Tokenizer::load() with the input as encoder.json (GPT-2's vocab.bpe).
void encoder_json(std::string_view input);
// Tokenizer::load() with the input as vocab.bpe (GPT-2's encoder.json).
void vocab_bpe(std::string_view input);
// parse_safetensors_header(): input[0:8] is the data size (little-endian),
// the rest the header JSON; what it accepts must fit the data section.
void safetensors_header(std::string_view input);

struct Target {
  const char* name;  // its corpus is tests/fuzz/corpus/<name>/
  void (*run)(std::string_view input);
};
const std::vector<Target>& all_targets();

}  // namespace muonrun::fuzz
