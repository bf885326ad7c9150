#include "trainer/run/batch_source.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "trainer/data/data_loader.h"
#include "trainer/data/document_loader.h"

namespace muonrun {
namespace {

// Host tokens to `device`: pinned and asynchronous on CUDA, so the copy does
// not wait for the queued work.
torch::Tensor to_device(torch::Tensor host, const torch::Device& device) {
  return device.is_cuda() ? host.pin_memory().to(device, /*non_blocking=*/true) : host;
}

// The position, restore and reset of a loader, which both layouts pass on.
template <class Loader>
class LoaderSource : public BatchSource {
 public:
  LoaderPosition position() const override { return loader_.position(); }
  void restore(const LoaderPosition& position) override { loader_.restore(position); }
  void reset() override { loader_.reset(); }

 protected:
  template <class... Args>
  explicit LoaderSource(Args&&... args) : loader_(std::forward<Args>(args)...) {}
  Loader loader_;
};

// Record 11: B rows of T tokens, consecutive in the shard stream.
class RowBatches : public LoaderSource<DataLoader> {
 public:
  RowBatches(const std::string& pattern, BatchShape shape, int rank, int world, int64_t vocab_size)
      : LoaderSource(pattern, shape.rows, shape.seq_len, rank, world, vocab_size), shape_(shape) {}

  TokenBatch next(const torch::Device& device) override {
    const int64_t B = shape_.rows, T = shape_.seq_len;
    auto tokens = torch::empty({B * T + 1}, torch::kLong);
    loader_.next_batch(tokens.data_ptr<int64_t>());
    tokens = to_device(tokens, device);
    return {tokens.narrow(0, 0, B * T).view({B, T}), tokens.narrow(0, 1, B * T).view({B, T}), {}};
  }
  void set_stage(const BatchStage& stage) override {  // rows hold no documents to cut
    if (stage.seq_len != shape_.seq_len)
      throw std::logic_error("rows of " + std::to_string(shape_.seq_len) + " tokens cannot become " +
                             std::to_string(stage.seq_len));
  }

 private:
  BatchShape shape_;
};

// Record 29: one sequence of T tokens and its document offsets.
class DocumentBatches : public LoaderSource<DocumentLoader> {
 public:
  DocumentBatches(const std::string& pattern, const DocumentLoaderOptions& options) : LoaderSource(pattern, options) {}

  TokenBatch next(const torch::Device& device) override {
    loader_.next_batch(batch_);
    const auto T = static_cast<int64_t>(batch_.tokens.size()) - 1;
    auto tokens = to_device(torch::from_blob(batch_.tokens.data(), {T + 1}, torch::kLong).clone(), device);
    auto offsets = torch::from_blob(batch_.cu_seqlens.data(), {static_cast<int64_t>(batch_.cu_seqlens.size())},
                                    torch::kInt)
                       .clone();
    return {tokens.narrow(0, 0, T), tokens.narrow(0, 1, T), offsets};
  }
  void set_stage(const BatchStage& stage) override { loader_.resize(stage.seq_len, stage.max_doc_tokens); }

 private:
  DocumentBatch batch_;
};

std::unique_ptr<BatchSource> make_batches(const Config& config, const std::string& pattern, DocumentMode mode,
                                          BatchLayout layout, BatchShape shape, int rank, int world) {
  if (layout == BatchLayout::rows)
    return std::make_unique<RowBatches>(pattern, shape, rank, world, config.model.vocab_size);
  DocumentLoaderOptions options;
  options.mode = mode;
  options.seq_tokens = shape.seq_len;
  options.max_doc_tokens = config.data.max_doc_tokens;
  options.rank = rank;
  options.world = world;
  options.vocab_size = config.model.vocab_size;
  return std::make_unique<DocumentBatches>(pattern, options);
}

}  // namespace

std::unique_ptr<BatchSource> make_training_batches(const Config& config, BatchLayout layout, BatchShape shape,
                                                   int rank, int world) {
  return make_batches(config, config.data.train, DocumentMode::Packed, layout, shape, rank, world);
}

std::unique_ptr<BatchSource> make_validation_batches(const Config& config, BatchLayout layout, BatchShape shape,
                                                     int rank, int world) {
  return make_batches(config, config.data.val, DocumentMode::Contiguous, layout, shape, rank, world);
}

}  // namespace muonrun
