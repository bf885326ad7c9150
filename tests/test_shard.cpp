// Token shards: the exact llm.c layout, round trips, and one specific error
// message for each way a shard file can be broken.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "tests/test_helpers.h"
#include "trainer/data/shard.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  static const fs::path dir = tests::scratch_dir("shard");
  return dir;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file with the given header fields followed by `payload_bytes` bytes.
std::string write_raw(const std::string& name, int32_t magic, int32_t version, int32_t count,
                      size_t payload_bytes) {
  int32_t header[256] = {magic, version, count};
  std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
  bytes.append(payload_bytes, '\x01');
  std::string path = (temp_dir() / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string open_error(const std::string& path) {
  return tests::error_of([&] { ShardReader shard(path); });
}

}  // namespace

TEST(Shard, WritesTheLlmcLayout) {
  std::string path = (temp_dir() / "layout.bin").string();
  write_shard(path, {1, 2, 65535});
  std::string bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 1024u + 6u);
  int32_t header[256];
  std::memcpy(header, bytes.data(), sizeof header);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 3);
  for (int i = 3; i < 256; ++i) EXPECT_EQ(header[i], 0);
  EXPECT_EQ(bytes.substr(1024), std::string("\x01\x00\x02\x00\xff\xff", 6));  // little-endian
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Shard, RoundTrip) {
  std::mt19937 rng(7);
  std::vector<uint16_t> tokens(100003);
  for (auto& t : tokens) t = static_cast<uint16_t>(rng());
  std::string path = (temp_dir() / "round.bin").string();
  write_shard(path, tokens);
  EXPECT_EQ(read_shard(path), tokens);

  ShardReader shard(path);
  EXPECT_EQ(shard.num_tokens(), 100003);
  std::vector<uint16_t> slice(10);
  shard.read(99993, 10, slice.data());
  EXPECT_TRUE(std::equal(slice.begin(), slice.end(), tokens.end() - 10));
  EXPECT_THROW(shard.read(99994, 10, slice.data()), std::out_of_range);
  EXPECT_THROW(shard.read(-1, 1, slice.data()), std::out_of_range);

  write_shard(path, {});  // overwrites; an empty shard is valid
  EXPECT_TRUE(read_shard(path).empty());
}

TEST(Shard, EachCorruptionHasItsOwnMessage) {
  struct Case {
    std::string path, expected;
  };
  std::string empty = (temp_dir() / "empty.bin").string();
  std::ofstream(empty).close();
  std::string short_file = (temp_dir() / "short.bin").string();
  std::ofstream(short_file) << std::string(100, 'x');
  const Case cases[] = {
      {empty, "empty.bin: empty file (expected a 1024-byte shard header)"},
      {short_file, "short.bin: file has 100 bytes, too short for the 1024-byte shard header"},
      {write_raw("magic.bin", 12345, 1, 0, 0),
       "magic.bin: bad magic 12345 at offset 0 (expected 20240520)"},
      {write_raw("llama.bin", 20240801, 7, 0, 0),
       "llama.bin: bad magic 20240801 at offset 0 (expected 20240520)"},
      {write_raw("version.bin", kShardMagic, 7, 0, 0),
       "version.bin: bad version 7 at offset 4 (expected 1)"},
      {write_raw("negative.bin", kShardMagic, 1, -5, 0),
       "negative.bin: negative token count -5 at offset 8"},
      {write_raw("truncated.bin", kShardMagic, 1, 10, 10),
       "truncated.bin: truncated: file has 1034 bytes but the header's token count 10 (offset 8) "
       "needs 1044 bytes"},
      {write_raw("absurd.bin", kShardMagic, 1, INT32_MAX, 2),
       "absurd.bin: truncated: file has 1026 bytes but the header's token count 2147483647"},
      {write_raw("trailing.bin", kShardMagic, 1, 10, 23),
       "trailing.bin: 3 trailing bytes at offset 1044: the header's token count 10 (offset 8) "
       "needs 1044 bytes, file has 1047"},
      {write_raw("odd.bin", kShardMagic, 1, 0, 1), "odd.bin: 1 trailing bytes at offset 1024"},
      {(temp_dir() / "missing.bin").string(), "missing.bin: cannot open"},
  };
  for (const Case& c : cases) {
    std::string e = open_error(c.path);
    EXPECT_NE(e.find(c.expected), std::string::npos) << "got: " << e << "\nwant: " << c.expected;
  }
}
