// libFuzzer entry point for the corpus reader (JSONL, .txt, .gz, .xz); the body is
// muonrun::fuzz::text_input in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::text_input({reinterpret_cast<const char*>(data), size});
  return 0;
}
