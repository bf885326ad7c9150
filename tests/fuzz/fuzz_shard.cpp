// libFuzzer entry point for the shard reader and the DataLoader; the body is
// muonrun::fuzz::shard in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

// The loader logs every shard it opens: at a few thousand runs a second that
// would be all the fuzzer prints.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::shard({reinterpret_cast<const char*>(data), size});
  return 0;
}
