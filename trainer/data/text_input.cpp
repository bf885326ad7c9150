// Reading corpora: a byte stream that undoes xz/gzip compression, and on top
// of it the framing of documents (whole .txt file, its paragraphs, or JSONL
// lines).
#include "trainer/data/text_input.h"

#include <fcntl.h>
#include <lzma.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "trainer/base/json.h"
#include "trainer/base/strings.h"

namespace muonrun {
namespace {

constexpr size_t kChunkBytes = 1 << 20;
// xz -9 needs 65 MiB; a header asking for more than this is not a corpus.
constexpr uint64_t kXzMemoryLimit = uint64_t{1} << 30;

enum class Compression { None, Xz, Gzip };

struct InputName {
  bool jsonl;
  Compression compression;
};

InputName parse_name(const std::string& path) {
  std::string_view name = path;
  Compression compression = Compression::None;
  if (ends_with(name, ".xz")) compression = Compression::Xz;
  if (ends_with(name, ".gz")) compression = Compression::Gzip;
  if (compression != Compression::None) name.remove_suffix(3);
  if (ends_with(name, ".jsonl")) return {true, compression};
  if (ends_with(name, ".txt")) return {false, compression};
  throw std::runtime_error(path +
                           ": unsupported input (expected .txt or .jsonl, optionally .xz or .gz)");
}

// The file's content with compression undone.
class ByteStream {
 public:
  ByteStream(const std::string& path, Compression compression)
      : path_(path), compression_(compression) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    if (compression_ == Compression::Xz &&
        lzma_stream_decoder(&xz_, kXzMemoryLimit, LZMA_CONCATENATED) != LZMA_OK) {
      ::close(fd_);
      throw std::runtime_error(path + ": cannot start the xz decoder");
    }
    // 16 + MAX_WBITS: expect a gzip header and trailer.
    if (compression_ == Compression::Gzip && inflateInit2(&gz_, 16 + MAX_WBITS) != Z_OK) {
      ::close(fd_);
      throw std::runtime_error(path + ": cannot start the gzip decoder");
    }
    if (compression_ != Compression::None) input_.resize(kChunkBytes);
  }

  ~ByteStream() {
    if (compression_ == Compression::Xz) lzma_end(&xz_);
    if (compression_ == Compression::Gzip) inflateEnd(&gz_);
    ::close(fd_);
  }

  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Up to `n` bytes into `out`; 0 only at the end.
  size_t read(char* out, size_t n) {
    switch (compression_) {
      case Compression::Xz:
        return read_xz(out, n);
      case Compression::Gzip:
        return read_gzip(out, n);
      default:
        return read_file(out, n);
    }
  }

  uint64_t file_bytes_read() const { return file_bytes_read_; }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    // Input read but not yet taken by the decoder is not where it stopped.
    uint64_t pending = compression_ == Compression::Xz ? xz_.avail_in : gz_.avail_in;
    throw std::runtime_error(path_ + ": " + what + " (near compressed byte " +
                             std::to_string(file_bytes_read_ - pending) + ")");
  }

  size_t read_file(char* out, size_t n) {
    while (true) {
      ssize_t got = ::read(fd_, out, n);
      if (got >= 0) {
        file_bytes_read_ += static_cast<uint64_t>(got);
        return static_cast<size_t>(got);
      }
      if (errno != EINTR) throw std::runtime_error(path_ + ": read error: " + std::strerror(errno));
    }
  }

  // Reads the next compressed chunk into input_; returns its size, 0 at EOF.
  size_t refill() {
    size_t got = read_file(reinterpret_cast<char*>(input_.data()), input_.size());
    input_eof_ = got == 0;
    return got;
  }

  size_t read_xz(char* out, size_t n) {
    xz_.next_out = reinterpret_cast<uint8_t*>(out);
    xz_.avail_out = n;
    while (!done_ && xz_.avail_out == n) {
      if (xz_.avail_in == 0 && !input_eof_) {
        xz_.avail_in = refill();
        xz_.next_in = input_.data();
      }
      lzma_ret ret = lzma_code(&xz_, input_eof_ ? LZMA_FINISH : LZMA_RUN);
      if (ret == LZMA_STREAM_END) {
        done_ = true;
      } else if (ret != LZMA_OK) {
        switch (ret) {
          case LZMA_FORMAT_ERROR:
            fail("not xz data");
          case LZMA_DATA_ERROR:
            fail("corrupt xz data");
          case LZMA_BUF_ERROR:
            fail("truncated xz data");
          case LZMA_MEMLIMIT_ERROR:
            fail("xz data needs more than 1 GiB of memory to decompress");
          case LZMA_MEM_ERROR:
            fail("out of memory decompressing xz data");
          default:
            fail("xz decoder error " + std::to_string(ret));
        }
      }
    }
    return n - xz_.avail_out;
  }

  size_t read_gzip(char* out, size_t n) {
    gz_.next_out = reinterpret_cast<Bytef*>(out);
    gz_.avail_out = static_cast<uInt>(n);
    while (!done_ && gz_.avail_out == n) {
      if (gz_.avail_in == 0) {
        gz_.avail_in = static_cast<uInt>(refill());
        gz_.next_in = input_.data();
        if (input_eof_) fail("truncated gzip data");
      }
      int ret = inflate(&gz_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        // A gzip file may hold several members one after another.
        if (gz_.avail_in == 0) {
          gz_.avail_in = static_cast<uInt>(refill());
          gz_.next_in = input_.data();
        }
        if (input_eof_)
          done_ = true;
        else
          inflateReset(&gz_);
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        fail(std::string("corrupt gzip data: ") + (gz_.msg ? gz_.msg : std::to_string(ret)));
      }
    }
    return n - gz_.avail_out;
  }

  std::string path_;
  Compression compression_;
  int fd_ = -1;
  uint64_t file_bytes_read_ = 0;
  std::vector<uint8_t> input_;
  bool input_eof_ = false;
  bool done_ = false;
  lzma_stream xz_ = LZMA_STREAM_INIT;
  z_stream gz_{};
};

}  // namespace

void check_text_input_name(const std::string& path) { parse_name(path); }

struct TextReader::Impl {
  Impl(const std::string& path, InputName name, bool paragraphs)
      : path(path), jsonl(name.jsonl), paragraphs(paragraphs), stream(path, name.compression) {}

  // The whole (remaining) content: a .txt document.
  void read_all(std::string& text) {
    text.clear();
    while (true) {
      size_t old = text.size();
      text.resize(old + kChunkBytes);
      size_t got = stream.read(&text[old], kChunkBytes);
      text.resize(old + got);
      if (got == 0) return;
      if (text.size() > kMaxDocumentBytes)
        throw std::runtime_error(path + ": document larger than 1 GiB");
    }
  }

  // The next line without its '\n', valid until the next call.
  bool read_line(std::string_view& line) {
    size_t scan = start;
    while (true) {
      size_t newline = buffer.find('\n', scan);
      if (newline != std::string::npos || (stream_end && start < buffer.size())) {
        size_t end = newline != std::string::npos ? newline : buffer.size();
        line = std::string_view(buffer).substr(start, end - start);
        start = std::min(end + 1, buffer.size());
        ++line_no;
        return true;
      }
      if (stream_end) return false;
      if (buffer.size() - start > kMaxDocumentBytes)
        throw std::runtime_error(path + ":" + std::to_string(line_no + 1) +
                                 ": line longer than 1 GiB");
      // Drop the lines already returned (a no-op while one long line grows).
      buffer.erase(0, start);
      start = 0;
      scan = buffer.size();
      buffer.resize(scan + kChunkBytes);
      size_t got = stream.read(&buffer[scan], kChunkBytes);
      buffer.resize(scan + got);
      stream_end = got == 0;
    }
  }

  static bool blank(std::string_view line) {
    return line.find_first_not_of(" \t\r") == std::string_view::npos;
  }

  bool next_paragraph(std::string& text) {
    text.clear();
    std::string_view line;
    while (read_line(line)) {
      if (blank(line)) {
        if (text.empty()) continue;
        break;
      }
      if (!text.empty()) text += '\n';
      text.append(line);
      if (text.size() > kMaxDocumentBytes)
        throw std::runtime_error(path + ":" + std::to_string(line_no) +
                                 ": paragraph larger than 1 GiB");
    }
    // The last line's CR of a CRLF file is its line end, not text.
    if (!text.empty() && text.back() == '\r') text.pop_back();
    return !text.empty();
  }

  bool next_jsonl(std::string& text) {
    std::string_view line;
    while (read_line(line)) {
      if (blank(line)) continue;
      std::string where = path + ":" + std::to_string(line_no);
      if (!json::extract_string_member(line, "text", where, text))
        throw std::runtime_error(where + ": JSON object has no \"text\" member");
      return true;
    }
    return false;
  }

  std::string path;
  bool jsonl;
  bool paragraphs;  // .txt: a document per paragraph
  ByteStream stream;
  std::string buffer;  // lines not yet returned start at `start`
  size_t start = 0;
  bool stream_end = false;
  int64_t line_no = 0;
  bool txt_done = false;
};

TextReader::TextReader(const std::string& path, bool split_at_blank_lines)
    : impl_(std::make_unique<Impl>(path, parse_name(path), split_at_blank_lines)) {}

TextReader::~TextReader() = default;

bool TextReader::next(std::string& text) {
  if (impl_->jsonl) return impl_->next_jsonl(text);
  if (impl_->paragraphs) return impl_->next_paragraph(text);
  if (impl_->txt_done) return false;
  impl_->read_all(text);
  impl_->txt_done = true;
  return true;
}

uint64_t TextReader::bytes_read() const { return impl_->stream.file_bytes_read(); }

}  // namespace muonrun
