// Validation of safetensors headers. The header comes from a file that may be
// truncated, corrupt or hostile, so every number is checked (without
// overflowing) before anyone allocates or reads by it.
#include "trainer/io/safetensors_header.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <utility>

#include "trainer/base/json.h"

namespace muonrun {
namespace {

struct DtypeSize {
  const char* name;
  size_t bytes;
};
constexpr DtypeSize kDtypeSizes[] = {
    {"F64", 8}, {"F32", 4}, {"BF16", 2}, {"F16", 2}, {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},  {"BOOL", 1},
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

void read_metadata(const json::Value& entry, const std::string& path,
                   std::map<std::string, std::string>& metadata) {
  if (!entry.is_object()) fail(path, "__metadata__ is not an object");
  for (const auto& [k, v] : entry.object) {
    if (!v.is_string()) fail(path, "__metadata__." + k + " is not a string");
    metadata[k] = v.string;
  }
}

// One tensor's entry; `what` ("tensor 'name'") prefixes its errors.
SafetensorsEntry read_entry(const std::string& name, const json::Value& entry,
                            uint64_t data_size, const std::string& path,
                            const std::string& what) {
  const json::Value* dtype = entry.find("dtype");
  const json::Value* shape = entry.find("shape");
  const json::Value* offsets = entry.find("data_offsets");
  if (!entry.is_object() || !dtype || !dtype->is_string() || !shape || !shape->is_array() ||
      !offsets || !offsets->is_array() || offsets->array.size() != 2)
    fail(path, what + ": expected {dtype, shape, data_offsets: [begin, end]}");
  const size_t element = safetensors_element_size(dtype->string);
  if (element == 0) fail(path, what + ": unsupported dtype " + dtype->string);

  SafetensorsEntry out{name, dtype->string, {}, 0, 0};
  // No dimension may make the tensor hold more elements than the data has
  // bytes, which also keeps the products below from overflowing.
  uint64_t numel = 1;
  for (const auto& d : shape->array) {
    int64_t s = d.as_int64();
    if (s < 0 || (s > 0 && numel > data_size / static_cast<uint64_t>(s)))
      fail(path, what + ": shape dimension " + std::to_string(s) + " is impossible for this file");
    out.shape.push_back(s);
    numel *= static_cast<uint64_t>(s);
  }
  int64_t begin = offsets->array[0].as_int64(), end = offsets->array[1].as_int64();
  if (begin < 0 || end < begin || static_cast<uint64_t>(end) > data_size)
    fail(path, what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] outside the data section of " + std::to_string(data_size) + " bytes");
  uint64_t needed = 0;
  if (__builtin_mul_overflow(numel, element, &needed))
    fail(path, what + ": the shape needs more than 2^64 bytes");
  if (static_cast<uint64_t>(end - begin) != needed)
    fail(path, what + ": data_offsets cover " + std::to_string(end - begin) +
                   " bytes but the shape needs " + std::to_string(needed));
  out.begin = static_cast<uint64_t>(begin);
  out.end = static_cast<uint64_t>(end);
  return out;
}

}  // namespace

size_t safetensors_element_size(std::string_view dtype) {
  for (const auto& d : kDtypeSizes)
    if (dtype == d.name) return d.bytes;
  return 0;
}

SafetensorsHeader parse_safetensors_header(std::string_view header_json, uint64_t data_size,
                                           const std::string& path) {
  json::Value root;
  try {
    root = json::parse(header_json, path + " (header)");
  } catch (const json::ParseError& e) {
    fail(path, std::string("corrupt header: ") + e.what());
  }
  if (!root.is_object()) fail(path, "header is not a JSON object");

  SafetensorsHeader header;
  std::set<std::string> names;
  for (const auto& [name, entry] : root.object) {
    if (name == "__metadata__") {
      read_metadata(entry, path, header.metadata);
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    try {
      header.tensors.push_back(read_entry(name, entry, data_size, path, what));
    } catch (const json::ParseError& e) {  // a shape or offset that is not an integer
      fail(path, what + ": " + e.what());
    }
    if (!names.insert(name).second) fail(path, "duplicate tensor '" + name + "'");
  }
  // Overlapping tensors would alias one another's bytes: not a valid file.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : header.tensors) ranges.emplace_back(t.begin, t.end);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail(path, "tensor data ranges overlap");
  return header;
}

}  // namespace muonrun
