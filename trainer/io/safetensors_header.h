// The JSON header of a safetensors file, checked against the data section it
// describes, without LibTorch: load_safetensors builds its tensors from this,
// and the fuzzer (tests/fuzz) reaches every check without linking LibTorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace muonrun {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // a name safetensors_element_size() knows: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range [begin, end) in the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in header order
  std::map<std::string, std::string> metadata;
};

// Bytes per element of the dtypes we read and write (F64, F32, BF16, F16,
// I64, I32, I16, I8, U8, BOOL); 0 for any other name.
size_t safetensors_element_size(std::string_view dtype);

// Parses `header_json` and checks it against a data section of `data_size`
// bytes: known dtypes, possible shapes, offsets inside the data, byte counts
// matching shape x element size, no overlapping ranges, no duplicate names,
// string metadata. Throws std::runtime_error "<path>: <problem>".
SafetensorsHeader parse_safetensors_header(std::string_view header_json, uint64_t data_size,
                                           const std::string& path);

}  // namespace muonrun
