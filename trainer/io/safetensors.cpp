#include "trainer/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "trainer/io/safetensors_header.h"
#include "trainer/base/atomic_file.h"
#include "trainer/base/json.h"

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

// Only names that parse_safetensors_header accepted get here.
torch::ScalarType torch_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw std::logic_error("safetensors: dtype " + name + " has no LibTorch type");
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
  std::error_code not_a_directory;
  if (std::filesystem::is_directory(path, not_a_directory))
    fail(path, "is a directory, not a safetensors file");
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
  std::string header_json(header_size, '\0');
  in.read(header_json.data(), header_size);
  if (!in) fail(path, "cannot read the header");
  const uint64_t data_start = 8 + header_size;
  const SafetensorsHeader header =
      parse_safetensors_header(header_json, file_size - data_start, path);

  SafetensorsFile file;
  file.metadata = header.metadata;
  for (const SafetensorsEntry& entry : header.tensors) {
    auto tensor = torch::empty(entry.shape, torch::dtype(torch_dtype(entry.dtype)));
    in.seekg(static_cast<std::streamoff>(data_start + entry.begin));
    in.read(static_cast<char*>(tensor.data_ptr()),
            static_cast<std::streamsize>(entry.end - entry.begin));
    if (!in)
      fail(path, "tensor '" + entry.name + "': cannot read its data at offset " +
                     std::to_string(data_start + entry.begin));
    file.tensors.emplace(entry.name, tensor);
  }
  return file;
}

}  // namespace muonrun
