// libFuzzer entry point for the JSON reader (parse, extract_string_member, quote); the body is
// muonrun::fuzz::json_reader in tests/fuzz/targets.cpp, shared with the corpus replay.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muonrun::fuzz::json_reader({reinterpret_cast<const char*>(data), size});
  return 0;
}
