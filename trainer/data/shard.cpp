// Writing and validating token shards. The header is read as host int32:
// every machine we target is little-endian, and the static_assert keeps it so.
#include "trainer/data/shard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "trainer/base/atomic_file.h"

namespace muonrun {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shards are little-endian");

// llm.c's Llama-3 shards (version 7, uint32 tokens): common enough to name.
constexpr int32_t kLlama3ShardMagic = 20240801;

std::runtime_error io_error(const std::string& path, const char* what) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

}  // namespace

void write_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  if (static_cast<int64_t>(tokens.size()) > kMaxShardTokens)
    throw std::runtime_error(path + ": " + std::to_string(tokens.size()) +
                             " tokens do not fit one shard (at most 2^31-1)");
  int32_t header[256] = {kShardMagic, kShardVersion, static_cast<int32_t>(tokens.size())};
  AtomicFile file(path);
  file.write(header, sizeof header);
  file.write(tokens.data(), tokens.size() * sizeof(uint16_t));
  file.commit();
}

ShardReader::ShardReader(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO that matched a shard pattern must not wait for
  // a writer; regular files read as usual.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw io_error(path, "cannot open");
  try {
    struct stat st;
    if (::fstat(fd_, &st) != 0) throw io_error(path, "cannot stat");
    const int64_t size = st.st_size;
    auto fail = [&](const std::string& what) { throw std::runtime_error(path + ": " + what); };
    // A directory opens and has a size, but reading it fails with EISDIR.
    if (S_ISDIR(st.st_mode)) fail("is a directory, not a shard file");
    if (!S_ISREG(st.st_mode)) fail("not a regular file");
    if (size == 0) fail("empty file (expected a 1024-byte shard header)");
    if (size < kShardHeaderBytes)
      fail("file has " + std::to_string(size) + " bytes, too short for the 1024-byte shard header");
    int32_t header[256];
    if (::pread(fd_, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header))
      throw io_error(path, "cannot read the header");
    if (header[0] != kShardMagic)
      fail("bad magic " + std::to_string(header[0]) + " at offset 0 (expected " +
           std::to_string(kShardMagic) + ")" +
           (header[0] == kLlama3ShardMagic
                ? ": this is llm.c's Llama-3 format with uint32 tokens, which is not supported "
                  "(shards hold uint16 GPT-2 tokens)"
                : ""));
    if (header[1] != kShardVersion)
      fail("bad version " + std::to_string(header[1]) + " at offset 4 (expected " +
           std::to_string(kShardVersion) + ")");
    if (header[2] < 0) fail("negative token count " + std::to_string(header[2]) + " at offset 8");
    num_tokens_ = header[2];
    const int64_t expected = kShardHeaderBytes + 2 * num_tokens_;
    const std::string announced = "the header's token count " + std::to_string(num_tokens_) +
                                  " (offset 8) needs " + std::to_string(expected) + " bytes";
    if (size < expected)
      fail("truncated: file has " + std::to_string(size) + " bytes but " + announced);
    if (size > expected)
      fail(std::to_string(size - expected) + " trailing bytes at offset " +
           std::to_string(expected) + ": " + announced + ", file has " + std::to_string(size));
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

ShardReader::~ShardReader() {
  if (fd_ >= 0) ::close(fd_);
}

ShardReader::ShardReader(ShardReader&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      num_tokens_(other.num_tokens_) {}

ShardReader& ShardReader::operator=(ShardReader&& other) noexcept {
  std::swap(path_, other.path_);
  std::swap(fd_, other.fd_);
  std::swap(num_tokens_, other.num_tokens_);
  return *this;
}

void ShardReader::read(int64_t offset, int64_t count, uint16_t* out) const {
  if (offset < 0 || count < 0 || offset + count > num_tokens_)
    throw std::out_of_range(path_ + ": tokens [" + std::to_string(offset) + ", " +
                            std::to_string(offset + count) + ") are outside the shard's " +
                            std::to_string(num_tokens_));
  auto dst = reinterpret_cast<char*>(out);
  size_t left = static_cast<size_t>(count) * sizeof(uint16_t);
  off_t pos = kShardHeaderBytes + offset * static_cast<int64_t>(sizeof(uint16_t));
  while (left > 0) {
    ssize_t n = ::pread(fd_, dst, left, pos);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error(path_, "read failed");
    if (n == 0)
      throw std::runtime_error(path_ + ": file shrank: unexpected end at offset " +
                               std::to_string(pos));
    dst += n;
    pos += n;
    left -= static_cast<size_t>(n);
  }
}

std::vector<uint16_t> read_shard(const std::string& path) {
  ShardReader shard(path);
  std::vector<uint16_t> tokens(static_cast<size_t>(shard.num_tokens()));
  shard.read(0, shard.num_tokens(), tokens.data());
  return tokens;
}

}  // namespace muonrun
