// GPT-2 byte-level BPE, following OpenAI's encoder.py: text is cut into
// pre-tokens by GPT-2's regex, each pre-token's bytes are mapped to tokens and
// merged pairwise by rank. Token ids are 16 bits, as in the shards.
#include "trainer/data/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "trainer/base/json.h"

namespace muonrun {
namespace {

// Far above GPT-2's 1 MB encoder.json and 0.5 MB vocab.bpe; stops a wrong
// path (a corpus, a device) from being read whole.
constexpr size_t kMaxVocabFileBytes = 64 << 20;
// Per-thread cache of BPE results: bounded so that hostile text cannot grow it
// without limit; long pieces are rare and not worth caching.
constexpr size_t kMaxCacheEntries = 1 << 18;
constexpr size_t kMaxCachedPiece = 64;
// BPE needs about 30 bytes of memory per byte of a pre-token. Longer ones
// (a megabyte without a space: never in real text) are merged in slices of
// this size, so hostile input cannot exhaust memory.
constexpr size_t kMaxBpeBytes = 1 << 20;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxVocabFileBytes)
      throw std::runtime_error(path + ": larger than 64 MiB, not a GPT-2 vocabulary file");
  }
  if (in.bad()) throw std::runtime_error(path + ": read error");
  return text;
}

// encoder.py's bytes_to_unicode(): every byte gets a printable code point so
// that vocabulary files can spell tokens as text. Printable Latin-1 bytes stand
// for themselves; the others get 256, 257, ... in byte order.
std::array<uint16_t, 256> byte_code_points() {
  std::array<uint16_t, 256> cp{};
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cp[b] = static_cast<uint16_t>(printable ? b : next++);
  }
  return cp;
}

// A token as spelled in encoder.json / vocab.bpe back to its bytes. `where`
// (file, or file:line) prefixes the error.
std::string spelled_to_bytes(std::string_view spelled, const std::string& where) {
  static const std::array<int, 324> byte_of = [] {
    std::array<int, 324> t;
    t.fill(-1);
    auto cp = byte_code_points();
    for (int b = 0; b < 256; ++b) t[cp[b]] = b;
    return t;
  }();
  std::string bytes;
  for (size_t i = 0; i < spelled.size();) {
    auto c = static_cast<unsigned char>(spelled[i]);
    unsigned cp = c;
    size_t len = 1;
    if (c >= 0x80) {
      // Only one- and two-byte UTF-8 sequences can spell GPT-2 bytes (< U+0144).
      auto c1 = i + 1 < spelled.size() ? static_cast<unsigned char>(spelled[i + 1]) : 0;
      bool two_bytes = (c & 0xE0) == 0xC0 && (c1 & 0xC0) == 0x80;
      cp = two_bytes ? ((c & 0x1Fu) << 6) | (c1 & 0x3Fu) : 0x110000;
      len = 2;
    }
    if (cp >= byte_of.size() || byte_of[cp] < 0) {
      char hex[16];
      if (cp < 0x110000)
        std::snprintf(hex, sizeof hex, "U+%04X", cp);
      else
        std::snprintf(hex, sizeof hex, "byte 0x%02X", c);
      throw std::runtime_error(where + ": token " + json::quote(spelled) + " has " + hex +
                               ", which is not in GPT-2's byte alphabet");
    }
    bytes += static_cast<char>(byte_of[cp]);
    i += len;
  }
  if (bytes.empty()) throw std::runtime_error(where + ": empty token");
  return bytes;
}

// GPT-2's pre-tokenizer, with \s spelled out as Unicode White_Space: PCRE2
// 10.42 also counts U+180E as a space, unlike Python's `regex` (encoder.py)
// and tiktoken, which must agree with us.
std::string gpt2_pattern() {
  const std::string ws =
      R"(\t\n\x0B\f\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
  const std::string space = "[" + ws + "]", non_space = "[^" + ws + "]";
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" + ws + R"(\p{L}\p{N}]+|)" + space +
         "+(?!" + non_space + ")|" + space + "+";
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// Match data is per thread: pcre2_match writes into it.
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(data); }
  };
  thread_local Holder holder;
  if (!holder.data) throw std::bad_alloc();
  return holder.data;
}

std::atomic<uint64_t> next_vocab_id{1};

struct Merge {
  int rank;
  uint16_t result;
};

}  // namespace

struct Tokenizer::Vocab {
  uint64_t id = next_vocab_id++;               // tells the thread-local caches apart
  std::vector<std::string> tokens;             // id -> bytes
  std::array<uint16_t, 256> byte_token{};      // byte -> its one-byte token
  std::unordered_map<uint32_t, Merge> merges;  // (left << 16 | right) -> merge
  std::unique_ptr<pcre2_code, void (*)(pcre2_code*)> pattern{nullptr, pcre2_code_free};

  const Merge* find_merge(uint16_t left, uint16_t right) const {
    auto it = merges.find(uint32_t(left) << 16 | right);
    return it == merges.end() ? nullptr : &it->second;
  }

  void encode_piece(std::string_view piece, std::vector<uint16_t>& out) const {
    if (piece.size() == 1) {
      out.push_back(byte_token[static_cast<unsigned char>(piece[0])]);
      return;
    }
    if (piece.size() > kMaxCachedPiece) {
      for (size_t i = 0; i < piece.size(); i += kMaxBpeBytes)
        bpe(piece.substr(i, kMaxBpeBytes), out);
      return;
    }
    struct Cache {
      uint64_t owner = 0;
      std::unordered_map<std::string, std::vector<uint16_t>> pieces;
    };
    thread_local Cache cache;
    if (cache.owner != id || cache.pieces.size() >= kMaxCacheEntries) {
      cache.pieces.clear();
      cache.owner = id;
    }
    auto [it, inserted] = cache.pieces.try_emplace(std::string(piece));
    if (inserted) bpe(piece, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
  }

  // encoder.py's bpe(): each round merges every occurrence, left to right, of
  // the lowest-ranked adjacent pair; pairs that a round creates count from the
  // next round on. A heap of candidate pairs over a linked list of symbols
  // makes this O(n log n), so a megabyte-long pre-token cannot stall us.
  void bpe(std::string_view piece, std::vector<uint16_t>& out) const {
    struct Symbol {
      uint16_t token;
      bool merged_away;
      int prev, next;
    };
    struct Candidate {
      int rank, left;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    const int n = static_cast<int>(piece.size());
    std::vector<Symbol> sym(n);
    for (int i = 0; i < n; ++i)
      sym[i] = {byte_token[static_cast<unsigned char>(piece[i])], false, i - 1, i + 1};
    // Pairs found wait here until the current round is over; the pairs of
    // the raw bytes start the first round.
    std::vector<Candidate> next_round;
    auto consider = [&](int left) {
      if (left < 0 || sym[left].next >= n) return;
      if (const Merge* m = find_merge(sym[left].token, sym[sym[left].next].token))
        next_round.push_back({m->rank, left});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i);
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    int round = -1;
    while (!heap.empty() || !next_round.empty()) {
      if (heap.empty() || heap.top().rank > round) {  // the round is over
        for (const Candidate& c : next_round) heap.push(c);
        next_round.clear();
        round = heap.top().rank;
      }
      Candidate c = heap.top();
      heap.pop();
      Symbol& s = sym[c.left];
      if (s.merged_away || s.next >= n) continue;
      const Merge* m = find_merge(s.token, sym[s.next].token);
      if (!m || m->rank != c.rank) continue;  // the pair changed since it was queued
      Symbol& right = sym[s.next];
      right.merged_away = true;
      s.token = m->result;
      s.next = right.next;
      if (s.next < n) sym[s.next].prev = c.left;
      consider(s.prev);
      consider(c.left);
    }
    for (int i = 0; i < n; i = sym[i].next) out.push_back(sym[i].token);
  }
};

namespace {

// encoder.json: {"token spelled in byte alphabet": id, ...}, ids 0..n-1.
std::unordered_map<std::string, int> read_encoder(const std::string& path,
                                                  std::vector<std::string>& tokens) {
  json::Value root = json::parse(read_file(path), path);
  if (!root.is_object()) throw std::runtime_error(path + ": expected a JSON object of token ids");
  const size_t n = root.object.size();
  if (n > 65536)
    throw std::runtime_error(path + ": " + std::to_string(n) +
                             " tokens do not fit the 16-bit ids of our shards");
  tokens.assign(n, "");
  std::vector<bool> seen(n);
  std::unordered_map<std::string, int> ids;
  for (const auto& [spelled, value] : root.object) {
    std::string name = path + ": token " + json::quote(spelled);
    std::string bytes = spelled_to_bytes(spelled, path);
    int64_t id = -1;
    try {
      id = value.as_int64();
    } catch (const json::ParseError&) {
      // reported below with the token's name
    }
    if (id < 0 || id >= static_cast<int64_t>(n))
      throw std::runtime_error(name + ": expected an integer id in 0.." + std::to_string(n - 1) +
                               ", got " +
                               (value.is_number()   ? value.number_text
                                : value.is_string() ? json::quote(value.string)
                                                    : std::string("another JSON type")));
    if (seen[id]) throw std::runtime_error(name + ": id " + std::to_string(id) + " is used twice");
    if (!ids.emplace(bytes, static_cast<int>(id)).second)
      throw std::runtime_error(name + " appears twice");
    seen[id] = true;
    tokens[id] = std::move(bytes);
  }
  if (n <= Tokenizer::kEndOfText || tokens[Tokenizer::kEndOfText] != "<|endoftext|>")
    throw std::runtime_error(path + ": id " + std::to_string(Tokenizer::kEndOfText) +
                             " must be <|endoftext|> (not a GPT-2 encoder.json)");
  return ids;
}

// vocab.bpe: a "#version" line, then one merge "left right" per line, by rank.
void read_merges(const std::string& path, const std::unordered_map<std::string, int>& ids,
                 std::unordered_map<uint32_t, Merge>& merges) {
  std::istringstream in(read_file(path));
  std::string line;
  int line_no = 0;
  int rank = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string where = path + ":" + std::to_string(line_no);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1) {
      if (line.rfind("#version", 0) != 0)
        throw std::runtime_error(where + ": expected the \"#version\" header line");
      continue;
    }
    if (line.empty()) continue;
    size_t space = line.find(' ');
    if (space == 0 || space == std::string::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      throw std::runtime_error(where + ": expected two tokens separated by one space, got " +
                               json::quote(line));
    auto id = [&](const std::string& spelled, std::string_view role) {
      auto it = ids.find(spelled_to_bytes(spelled, where));
      if (it == ids.end())
        throw std::runtime_error(where + ": " + std::string(role) + " token " +
                                 json::quote(spelled) + " is not in the encoder.json");
      return static_cast<uint16_t>(it->second);
    };
    const std::string left = line.substr(0, space), right = line.substr(space + 1);
    uint16_t l = id(left, "left"), r = id(right, "right"), result = id(left + right, "merged");
    if (!merges.emplace(uint32_t(l) << 16 | r, Merge{rank++, result}).second)
      throw std::runtime_error(where + ": duplicate merge " + json::quote(line));
  }
  if (line_no == 0) throw std::runtime_error(path + ": empty file (expected a \"#version\" line)");
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& encoder_json_path, const std::string& vocab_bpe_path) {
  auto vocab = std::make_shared<Vocab>();
  auto ids = read_encoder(encoder_json_path, vocab->tokens);
  for (int b = 0; b < 256; ++b) {
    auto it = ids.find(std::string(1, static_cast<char>(b)));
    if (it == ids.end())
      throw std::runtime_error(encoder_json_path + ": no token for byte " + std::to_string(b));
    vocab->byte_token[b] = static_cast<uint16_t>(it->second);
  }
  read_merges(vocab_bpe_path, ids, vocab->merges);

  int error = 0;
  PCRE2_SIZE offset = 0;
  std::string pattern = gpt2_pattern();
  vocab->pattern.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error,
                                     &offset, nullptr));
  if (!vocab->pattern)
    throw std::runtime_error("tokenizer: cannot compile the GPT-2 pattern: " +
                             pcre2_message(error));
  pcre2_jit_compile(vocab->pattern.get(), PCRE2_JIT_COMPLETE);  // without JIT: slower, same result
  return Tokenizer(std::move(vocab));
}

void Tokenizer::encode(std::string_view text, std::vector<uint16_t>& out) const {
  const Vocab& v = *vocab_;
  pcre2_match_data* match = thread_match_data();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = text.size(), end = text.size();
    int rc = pcre2_match(v.pattern.get(), subject, text.size(), pos, 0, match, nullptr);
    if (rc >= 0) {
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
      start = ovector[0];
      end = ovector[1];
    } else if (rc != PCRE2_ERROR_NOMATCH) {
      throw std::runtime_error("tokenizer: regex failed at byte " + std::to_string(pos) + ": " +
                               pcre2_message(rc));
    }
    // The pattern matches every valid character, so what it skips is invalid
    // UTF-8; those bytes still get tokens so that decode(encode(x)) == x.
    if (start > pos) v.encode_piece(text.substr(pos, start - pos), out);
    if (end > start) v.encode_piece(text.substr(start, end - start), out);
    pos = end;
  }
}

std::vector<uint16_t> Tokenizer::encode(std::string_view text) const {
  std::vector<uint16_t> out;
  encode(text, out);
  return out;
}

const std::string& Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= vocab_size())
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                            std::to_string(vocab_size() - 1) + ")");
  return vocab_->tokens[id];
}

std::string Tokenizer::decode(const std::vector<uint16_t>& tokens) const {
  std::string text;
  for (uint16_t t : tokens) text += token_bytes(t);
  return text;
}

int Tokenizer::vocab_size() const { return static_cast<int>(vocab_->tokens.size()); }

// A cut right after a lone "\n" between two printable ASCII characters is
// safe: the regex makes "\n" a piece of its own there whether or not the text
// goes on, the piece before it ends at the printable character either way, and
// matching after the cut depends only on the text that follows (no lookbehind).
size_t find_safe_split(std::string_view text, size_t from) {
  auto printable = [](char c) { return c > ' ' && c < 0x7F; };
  for (size_t nl = text.find('\n', std::max<size_t>(from, 2) - 1);
       nl != std::string_view::npos && nl + 1 < text.size(); nl = text.find('\n', nl + 1)) {
    if (printable(text[nl - 1]) && printable(text[nl + 1])) return nl + 1;
  }
  return text.size();
}

}  // namespace muonrun
