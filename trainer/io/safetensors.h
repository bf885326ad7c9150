// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors):
//   8 bytes  little-endian uint64 N = header length
//   N bytes  JSON: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
//                   "__metadata__": {"key": "string value", ...}}
//   data     raw little-endian tensor bytes, offsets relative to the data start
// Python users open our weights with `safetensors.torch.load_file`.
//
// The reader treats the file as hostile: every offset, shape and size is
// checked against the file before anything is allocated.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace muonrun {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // on the CPU
  std::map<std::string, std::string> metadata;
};

// Writes `tensors` (any device; copied to the CPU) atomically: to path.tmp,
// fsync, rename. Supported dtypes: F64, F32, BF16, F16, I64, I32, I16, I8, U8, BOOL.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Throws std::runtime_error naming the file and the problem.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace muonrun
