// The micro-batches a run feeds its model, in the layout its recipe trains on
// (models/language_model.h): rows of seq_len tokens from the row loader
// (trainer/data/data_loader.h; record 11), or one packed sequence of whole
// documents with their offsets from the document loader
// (trainer/data/document_loader.h; record 29), copied to the device.
// Training and validation read through this one interface, so the training
// loop, validation and bench_step never ask which recipe runs.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "models/language_model.h"
#include "trainer/config/config.h"
#include "trainer/data/loader_position.h"

namespace muonrun {

// A stage of a batch-size schedule: the packed sequence per rank, and the
// tokens each of its documents is cut to.
struct BatchStage {
  int64_t seq_len, max_doc_tokens;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // This rank's next micro-batch, on `device`.
  virtual TokenBatch next(const torch::Device& device) = 0;
  // The packed sequence's length and the documents' cut from now on (a
  // stage of train.batch_schedule); a layout of rows keeps its shape and
  // refuses another length.
  virtual void set_stage(const BatchStage& stage) = 0;
  // Saved in checkpoints and restored exactly.
  virtual LoaderPosition position() const = 0;
  virtual void restore(const LoaderPosition& position) = 0;
  // Back to the first batch (before each validation).
  virtual void reset() = 0;
};

// What one micro-batch of a source holds: `rows` sequences of `seq_len`
// tokens (a packed layout has one).
struct BatchShape {
  int64_t rows, seq_len;
};

// The training source (data.train): packed documents are cut at
// data.max_doc_tokens and aligned to their starts, as the record's
// BOSFinder. The validation source (data.val): packed documents are read
// contiguously from the start, with the offsets of the documents they hold.
std::unique_ptr<BatchSource> make_training_batches(const Config& config, BatchLayout layout, BatchShape shape,
                                                   int rank, int world);
std::unique_ptr<BatchSource> make_validation_batches(const Config& config, BatchLayout layout, BatchShape shape,
                                                     int rank, int world);

}  // namespace muonrun
