// Corpora as a stream of documents, whatever the file layout: `.txt` (the
// whole file is one document, or with `split_at_blank_lines` each paragraph:
// a run of lines ended by a blank line, so that plain text such as a play or
// a book gives the many documents that document-aligned batches want) or
// `.jsonl` (one JSON object per line, its "text" member is a document), each
// optionally compressed as `.xz` or `.gz`.
// A JSONL line without a string "text" member is an error, not skipped: a
// corpus of another schema must not quietly become zero documents.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace muonrun {

// Longest document (or JSONL line) we accept; beyond it input is refused
// rather than held in memory.
constexpr size_t kMaxDocumentBytes = size_t{1} << 30;

// Throws unless `path` has a supported name (.txt/.jsonl, optionally .xz/.gz),
// so that a bad input list fails before any work starts.
void check_text_input_name(const std::string& path);

class TextReader {
 public:
  // `split_at_blank_lines`: a .txt file is one document per paragraph: its
  // lines up to a blank line (empty, or only spaces, tabs and a CR), joined
  // by '\n' without the last line's end; blank lines belong to no document.
  // No effect on .jsonl, whose documents are its lines.
  explicit TextReader(const std::string& path, bool split_at_blank_lines = false);
  ~TextReader();
  TextReader(const TextReader&) = delete;
  TextReader& operator=(const TextReader&) = delete;

  // The next document into `text`; false at the end of the file. Errors name
  // the file (and line of a .jsonl).
  bool next(std::string& text);
  // Bytes of the file read so far (compressed bytes for .xz/.gz), for progress.
  uint64_t bytes_read() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace muonrun
