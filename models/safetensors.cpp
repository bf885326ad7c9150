#include "models/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "trainer/atomic_file.h"
#include "trainer/json.h"

namespace muonrun {
namespace {

// Headers above this are not weights files; refusing them keeps a corrupt
// length field from turning into a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {torch::kFloat64, "F64"}, {torch::kFloat32, "F32"}, {torch::kBFloat16, "BF16"},
    {torch::kFloat16, "F16"}, {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
    {torch::kInt16, "I16"},   {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
    {torch::kBool, "BOOL"},
};

const char* dtype_name(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return d.name;
  throw std::runtime_error(std::string("safetensors: unsupported dtype ") + c10::toString(type));
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

}  // namespace

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> cpu;
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "" : ",") + json::quote(k) + ":" + json::quote(v);
      first = false;
    }
    header += "}";
  }
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    if (!names.insert(name).second) throw std::runtime_error(path + ": duplicate tensor " + name);
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    uint64_t bytes = t.numel() * t.element_size();
    std::string shape;
    for (int64_t d : t.sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    header += (header.size() > 1 ? "," : "") + json::quote(name) + ":{\"dtype\":\"" +
              dtype_name(t.scalar_type()) + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    cpu.push_back(t);
  }
  header += "}";
  // Pad the header with spaces so the data starts 8-byte aligned, as the
  // reference implementation does.
  while ((8 + header.size()) % 8 != 0) header += ' ';

  AtomicFile out(path);
  uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(len, 8);
  out.write(header.data(), header.size());
  for (const auto& t : cpu) out.write(t.data_ptr(), t.numel() * t.element_size());
  out.commit();
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open safetensors file");
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) fail(path, "file of " + std::to_string(file_size) + " bytes is too short for a safetensors header");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= uint64_t(len[i]) << (8 * i);
  if (header_size > kMaxHeaderBytes || header_size > file_size - 8)
    fail(path, "header length " + std::to_string(header_size) + " at offset 0 exceeds the file (" +
                   std::to_string(file_size) + " bytes)");
  std::string header(header_size, '\0');
  in.read(header.data(), header_size);
  if (!in) fail(path, "cannot read the header");
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;

  json::Value root;
  try {
    root = json::parse(header, path + " (header)");
  } catch (const json::ParseError& e) {
    fail(path, std::string("corrupt header: ") + e.what());
  }
  if (!root.is_object()) fail(path, "header is not a JSON object");

  SafetensorsFile file;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : root.object) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.object) {
        if (!v.is_string()) fail(path, "__metadata__." + k + " is not a string");
        file.metadata[k] = v.string;
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    const json::Value* dtype = entry.find("dtype");
    const json::Value* shape = entry.find("shape");
    const json::Value* offsets = entry.find("data_offsets");
    if (!entry.is_object() || !dtype || !dtype->is_string() || !shape || !shape->is_array() ||
        !offsets || !offsets->is_array() || offsets->array.size() != 2)
      fail(path, what + ": expected {dtype, shape, data_offsets: [begin, end]}");
    const DtypeName* type = nullptr;
    for (const auto& d : kDtypes)
      if (dtype->string == d.name) type = &d;
    if (!type) fail(path, what + ": unsupported dtype " + dtype->string);
    std::vector<int64_t> sizes;
    uint64_t numel = 1;
    try {
      for (const auto& d : shape->array) {
        int64_t s = d.as_int64();
        if (s < 0 || (s > 0 && numel > data_size / static_cast<uint64_t>(s)))
          fail(path, what + ": shape dimension " + std::to_string(s) + " is impossible for this file");
        sizes.push_back(s);
        numel *= static_cast<uint64_t>(s);
      }
      int64_t begin = offsets->array[0].as_int64(), end = offsets->array[1].as_int64();
      const uint64_t element = c10::elementSize(type->type);
      if (begin < 0 || end < begin || static_cast<uint64_t>(end) > data_size)
        fail(path, what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       "] outside the data section of " + std::to_string(data_size) + " bytes");
      if (static_cast<uint64_t>(end - begin) != numel * element)
        fail(path, what + ": data_offsets cover " + std::to_string(end - begin) +
                       " bytes but the shape needs " + std::to_string(numel * element));
      ranges.emplace_back(begin, end);
      auto tensor = torch::empty(sizes, torch::dtype(type->type));
      in.seekg(static_cast<std::streamoff>(data_start + begin));
      in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(end - begin));
      if (!in) fail(path, what + ": cannot read its data at offset " + std::to_string(data_start + begin));
      if (!file.tensors.emplace(name, tensor).second) fail(path, "duplicate tensor '" + name + "'");
    } catch (const json::ParseError& e) {
      fail(path, what + ": " + e.what());
    }
  }
  // Overlapping tensors would alias one another's bytes: not a valid file.
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail(path, "tensor data ranges overlap");
  return file;
}

}  // namespace muonrun
