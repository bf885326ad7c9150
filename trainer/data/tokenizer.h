// GPT-2's byte-level BPE tokenizer (r50k_base), so that muonrun turns raw text
// into exactly the token ids that OpenAI's encoder.py and tiktoken produce,
// and so that any byte string survives encode -> decode unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace muonrun {

class Tokenizer {
 public:
  // `<|endoftext|>`, which starts every document in our shards.
  static constexpr int kEndOfText = 50256;

  // Reads OpenAI's encoder.json (token -> id) and vocab.bpe (merges by rank).
  // Throws std::runtime_error naming the file (and line of vocab.bpe).
  static Tokenizer load(const std::string& encoder_json_path, const std::string& vocab_bpe_path);

  // The tokens of `text`, which may hold any bytes (invalid UTF-8 included).
  // "<|endoftext|>" inside the text is ordinary text, not kEndOfText.
  // Safe to call from several threads at once.
  std::vector<uint16_t> encode(std::string_view text) const;
  // The same, appended to `out`.
  void encode(std::string_view text, std::vector<uint16_t>& out) const;

  std::string decode(const std::vector<uint16_t>& tokens) const;
  // The bytes of one token; throws std::out_of_range for ids outside the vocab.
  const std::string& token_bytes(int id) const;
  int vocab_size() const;

 private:
  struct Vocab;
  explicit Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}
  std::shared_ptr<const Vocab> vocab_;
};

// The first offset p >= `from` at which `text` can be cut so that
// encode(text[:p]) + encode(text[p:]) == encode(text), or text.size() if there
// is none. Lets long documents be tokenized in parallel pieces.
size_t find_safe_split(std::string_view text, size_t from);

}  // namespace muonrun
