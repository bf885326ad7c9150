// libFuzzer entry point for the safetensors header check; the body is
// muonrun::fuzz::safetensors_header in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::safetensors_header({reinterpret_cast<const char*>(data), size});
  return 0;
}
