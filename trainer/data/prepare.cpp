// Data preparation as a pipeline: one reader thread cuts the input into jobs
// of about 1 MiB of text, worker threads tokenize them, and the calling thread
// takes the results back in input order and writes the shards. Jobs are cut
// the same way whatever the thread count, hence identical output.
#include "trainer/data/prepare.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>

#include "trainer/data/shard.h"
#include "trainer/data/text_input.h"
#include "trainer/data/tokenizer.h"
#include "trainer/base/progress.h"

namespace muonrun {
namespace {

namespace fs = std::filesystem;

constexpr size_t kJobBytes = 1 << 20;

struct Job {
  struct Piece {
    std::string text;
    bool starts_document;  // gets <|endoftext|> in front
  };
  int64_t seq = 0;
  size_t file = 0;  // index into the pipeline's files; jobs never span two
  std::vector<Piece> pieces;
  size_t text_bytes = 0;
  int64_t documents = 0;
  uint64_t input_bytes_done = 0;  // input read when the job was cut (progress)
  std::vector<uint16_t> tokens;
};

class Pipeline {
 public:
  Pipeline(const std::vector<std::string>& files, bool split_docs, const Tokenizer& tokenizer,
           int workers)
      : files_(files),
        split_docs_(split_docs),
        tokenizer_(tokenizer),
        workers_(workers),
        max_in_flight_(2 * workers + 2) {}

  // Calls consume(job) on this thread for every job, in input order.
  void run(const std::function<void(const Job&)>& consume) {
    std::thread reader([&] { guarded([&] { read(); }); });
    std::vector<std::thread> pool;
    for (int i = 0; i < workers_; ++i) pool.emplace_back([&] { guarded([&] { work(); }); });
    guarded([&] { write_in_order(consume); });
    reader.join();
    for (std::thread& t : pool) t.join();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // The first error stops every thread; run() rethrows it.
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      changed_.notify_all();
    }
  }

  void read() {
    uint64_t bytes_before = 0;  // input bytes of the files already read
    Job job;
    // Hands `job` to the workers once it is big enough (or `force`d);
    // false once another thread has failed.
    auto submit = [&](const TextReader& reader, bool force) {
      if (job.text_bytes < kJobBytes && !(force && !job.pieces.empty())) return true;
      job.input_bytes_done = bytes_before + reader.bytes_read();
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return error_ || next_seq_ - written_ < max_in_flight_; });
      if (error_) return false;
      job.seq = next_seq_++;
      size_t file = job.file;
      todo_.push_back(std::move(job));
      changed_.notify_all();
      job = Job{};
      job.file = file;
      return true;
    };
    for (size_t f = 0; f < files_.size(); ++f) {
      TextReader reader(files_[f], split_docs_);
      job.file = f;
      std::string doc;
      while (reader.next(doc)) {
        ++job.documents;
        // Long documents are cut where it cannot change the tokens, so that
        // several workers share them.
        const size_t size = doc.size();
        size_t begin = 0;
        do {
          size_t end = find_safe_split(doc, begin + kJobBytes);
          bool whole = begin == 0 && end == size;  // the usual case: no copy
          job.pieces.push_back(
              {whole ? std::move(doc) : doc.substr(begin, end - begin), begin == 0});
          job.text_bytes += end - begin;
          begin = end;
          if (!submit(reader, false)) return;
        } while (begin < size);
      }
      if (!submit(reader, true)) return;
      bytes_before += reader.bytes_read();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    reading_done_ = true;
    changed_.notify_all();
  }

  void work() {
    while (true) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return error_ || !todo_.empty() || reading_done_; });
        if (error_ || todo_.empty()) return;
        job = std::move(todo_.front());
        todo_.pop_front();
      }
      for (const Job::Piece& piece : job.pieces) {
        if (piece.starts_document) job.tokens.push_back(Tokenizer::kEndOfText);
        tokenizer_.encode(piece.text, job.tokens);
      }
      job.pieces.clear();
      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(job.seq, std::move(job));
      changed_.notify_all();
    }
  }

  void write_in_order(const std::function<void(const Job&)>& consume) {
    while (true) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] {
          return error_ || done_.count(written_) || (reading_done_ && written_ == next_seq_);
        });
        auto it = done_.find(written_);
        if (error_ || it == done_.end()) return;
        job = std::move(it->second);
        done_.erase(it);
        ++written_;
        changed_.notify_all();
      }
      consume(job);
    }
  }

  const std::vector<std::string>& files_;
  const bool split_docs_;
  const Tokenizer& tokenizer_;
  const int workers_;
  const int64_t max_in_flight_;  // jobs cut but not yet written: bounds memory

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Job> todo_;
  std::map<int64_t, Job> done_;
  int64_t next_seq_ = 0;
  int64_t written_ = 0;
  bool reading_done_ = false;
  std::exception_ptr error_;
};

// The shards of one split, each written as soon as it is full.
class ShardWriter {
 public:
  ShardWriter(fs::path dir, std::string split, int64_t shard_tokens)
      : dir_(std::move(dir)), split_(std::move(split)), shard_tokens_(shard_tokens) {}

  void add(const uint16_t* tokens, size_t n) {
    total_ += static_cast<int64_t>(n);
    while (n > 0) {
      size_t take = std::min(n, static_cast<size_t>(shard_tokens_) - buffer_.size());
      buffer_.insert(buffer_.end(), tokens, tokens + take);
      tokens += take;
      n -= take;
      if (static_cast<int64_t>(buffer_.size()) == shard_tokens_) flush();
    }
  }

  void flush() {
    if (buffer_.empty()) return;
    char name[64];
    std::snprintf(name, sizeof name, "%s_%06d.bin", split_.c_str(), shards_);
    write_shard((dir_ / name).string(), buffer_);
    spdlog::info("prepare: wrote {} ({} tokens)", (dir_ / name).string(), buffer_.size());
    ++shards_;
    buffer_.clear();
  }

  int shards() const { return shards_; }
  int64_t tokens() const { return total_; }

 private:
  fs::path dir_;
  std::string split_;
  int64_t shard_tokens_;
  std::vector<uint16_t> buffer_;
  int shards_ = 0;
  int64_t total_ = 0;
};

void check_options(const PrepareOptions& o) {
  if (o.inputs.empty()) throw std::invalid_argument("prepare: no input files");
  if (o.out_dir.empty()) throw std::invalid_argument("prepare: no output directory");
  if (o.shard_tokens < 1 || o.shard_tokens > kMaxShardTokens)
    throw std::invalid_argument("prepare: shard size " + std::to_string(o.shard_tokens) +
                                " is not in 1..2^31-1 tokens");
  if (o.val_tokens < 0) throw std::invalid_argument("prepare: negative --val-tokens");
  if (o.val_tokens > 0 && !o.val_inputs.empty())
    throw std::invalid_argument("prepare: give either --val-input or --val-tokens, not both");
  if (o.threads < 1) throw std::invalid_argument("prepare: threads must be at least 1");
  for (const auto* list : {&o.val_inputs, &o.inputs}) {
    for (const std::string& path : *list) {
      check_text_input_name(path);
      if (!fs::is_regular_file(path)) throw std::runtime_error(path + ": no such file");
    }
  }
  if (fs::is_directory(o.out_dir)) {
    for (const auto& entry : fs::directory_iterator(o.out_dir)) {
      std::string name = entry.path().filename().string();
      bool shard = (name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0) &&
                   entry.path().extension() == ".bin";
      if (shard)
        throw std::runtime_error(o.out_dir + " already holds shards (" + name +
                                 "); remove them or choose another output directory");
    }
  }
}

}  // namespace

PrepareSummary run_prepare(const PrepareOptions& options) {
  check_options(options);
  auto start = std::chrono::steady_clock::now();
  const fs::path vocab(options.vocab_dir);
  Tokenizer tokenizer =
      Tokenizer::load((vocab / "encoder.json").string(), (vocab / "vocab.bpe").string());
  fs::create_directories(options.out_dir);

  // Validation files first, so that their tokens can be routed by file index.
  std::vector<std::string> files = options.val_inputs;
  files.insert(files.end(), options.inputs.begin(), options.inputs.end());
  uint64_t total_bytes = 0;
  for (const std::string& f : files) total_bytes += fs::file_size(f);

  ShardWriter train(options.out_dir, "train", options.shard_tokens);
  ShardWriter val(options.out_dir, "val", options.shard_tokens);
  PrepareSummary summary;
  int64_t val_left = options.val_tokens;
  spdlog::info("prepare: {} files, {:.1f} MB, {} tokenizer threads", files.size(),
               total_bytes / 1e6, options.threads);
  Progress progress("prepare", total_bytes / 1e6, "MB");
  Pipeline(files, options.split_docs, tokenizer, options.threads).run([&](const Job& job) {
    const uint16_t* tokens = job.tokens.data();
    size_t n = job.tokens.size();
    if (job.file < options.val_inputs.size()) {
      val.add(tokens, n);
    } else {
      size_t to_val = static_cast<size_t>(std::min<int64_t>(val_left, static_cast<int64_t>(n)));
      val.add(tokens, to_val);
      val_left -= static_cast<int64_t>(to_val);
      train.add(tokens + to_val, n - to_val);
    }
    summary.documents += job.documents;
    summary.text_bytes += static_cast<int64_t>(job.text_bytes);
    progress.update(job.input_bytes_done / 1e6);
  });
  val.flush();
  train.flush();
  progress.finish();

  summary.train_tokens = train.tokens();
  summary.val_tokens = val.tokens();
  summary.train_shards = train.shards();
  summary.val_shards = val.shards();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t tokens = summary.train_tokens + summary.val_tokens;
  if (summary.train_tokens == 0) spdlog::warn("prepare: no training tokens were written");
  spdlog::info(
      "prepare: {} documents, {} tokens ({} train in {} shards, {} val in {}), "
      "{:.3f} bytes of text per token, {:.1f} s ({:.2f} MB/s of text)",
      summary.documents, tokens, summary.train_tokens, summary.train_shards, summary.val_tokens,
      summary.val_shards, tokens ? double(summary.text_bytes) / tokens : 0.0, summary.seconds,
      summary.text_bytes / 1e6 / summary.seconds);
  return summary;
}

}  // namespace muonrun
