// Where a loader's next global batch starts, saved in checkpoints and
// restored exactly (trainer/io/checkpoint.h): the row loader
// (trainer/data/data_loader.h) and the document loader
// (trainer/data/document_loader.h) both move through the shards by it.
#pragma once

#include <cstdint>

namespace muonrun {

struct LoaderPosition {
  int64_t shard = 0;     // index among the files matching the pattern, in sorted order
  int64_t document = 0;  // document loader, packed: index of the batch's first document among
                         // the shard's document starts; otherwise 0
  int64_t offset = 0;    // token offset of the batch in the shard (packed: that document's
                         // <|endoftext|>)
  int64_t epoch = 0;     // completed passes over all shards
};

}  // namespace muonrun
