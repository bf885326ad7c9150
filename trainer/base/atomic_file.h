// A file that appears under its name complete or not at all.
//
// Data goes to `<path>.tmp`; commit() fsyncs it, renames it over `path` and
// fsyncs the directory, so a crash or a full disk at any moment leaves either
// the old file or the new one, never a torn mix. Destroying an uncommitted
// AtomicFile removes the temporary file.
#pragma once

#include <cstddef>
#include <string>

namespace muonrun {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Throws std::runtime_error naming the file on any I/O error (ENOSPC too).
  void write(const void* data, size_t bytes);
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
};

// fsync of a directory, so that a rename inside it is durable.
void sync_directory(const std::string& dir);

// Writes `text` to `path` atomically.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace muonrun
