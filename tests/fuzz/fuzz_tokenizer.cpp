// libFuzzer entry point for the GPT-2 tokenizer's encode/decode round trip; the body is
// muonrun::fuzz::tokenizer in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::tokenizer({reinterpret_cast<const char*>(data), size});
  return 0;
}
