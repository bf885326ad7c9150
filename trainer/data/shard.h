// Token shards in the format of llm.c and the NanoGPT speedrun, so that shards
// made by either tool train here and ours train there: a header of 256
// little-endian int32 (magic, version, token count), then the uint16 tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muonrun {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int64_t kShardHeaderBytes = 256 * 4;
// The count in the header is an int32.
constexpr int64_t kMaxShardTokens = INT32_MAX;

// Writes a shard atomically (AtomicFile), so that a crash never leaves a
// truncated shard under the final name.
void write_shard(const std::string& path, const std::vector<uint16_t>& tokens);

// An open shard whose header and file size have been checked. Errors name the
// file, the byte offset and what was expected.
class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  ~ShardReader();
  ShardReader(ShardReader&& other) noexcept;
  ShardReader& operator=(ShardReader&& other) noexcept;
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const std::string& path() const { return path_; }
  int64_t num_tokens() const { return num_tokens_; }
  // Tokens [offset, offset + count) into `out`; thread-safe (pread).
  void read(int64_t offset, int64_t count, uint16_t* out) const;

 private:
  std::string path_;
  int fd_ = -1;
  int64_t num_tokens_ = 0;
};

// All tokens of a shard (for tests and tools).
std::vector<uint16_t> read_shard(const std::string& path);

}  // namespace muonrun
