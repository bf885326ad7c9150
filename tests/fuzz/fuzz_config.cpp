// libFuzzer entry point for the config loader (apply_yaml, apply_override); the body is
// muonrun::fuzz::config in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::config({reinterpret_cast<const char*>(data), size});
  return 0;
}
