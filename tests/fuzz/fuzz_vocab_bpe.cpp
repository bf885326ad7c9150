// libFuzzer entry point for Tokenizer::load on a fuzzed vocab.bpe; the body is
// muonrun::fuzz::vocab_bpe in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::vocab_bpe({reinterpret_cast<const char*>(data), size});
  return 0;
}
