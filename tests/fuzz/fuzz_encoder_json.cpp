// libFuzzer entry point for Tokenizer::load on a fuzzed encoder.json; the body is
// muonrun::fuzz::encoder_json in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::encoder_json({reinterpret_cast<const char*>(data), size});
  return 0;
}
