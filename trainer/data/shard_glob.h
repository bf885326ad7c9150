// The shard files a glob pattern names ("data/train_*.bin"), in sorted
// order: the order in which every loader reads them, so that all ranks and
// every resume see the same token stream.
#pragma once

#include <string>
#include <vector>

namespace muonrun {

// Throws, naming the pattern, when nothing matches or the listing fails.
std::vector<std::string> glob_shards(const std::string& pattern);

}  // namespace muonrun
