// safetensors: a file built byte by byte from the format specification reads
// back; our writer's files read back; every corrupt file gives its error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "trainer/io/safetensors.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / "muonrun_test_safetensors";
  fs::create_directories(dir);
  return (dir / name).string();
}

// A safetensors file from a header string and raw data, as the spec lays it out.
std::string write_raw(const std::string& name, const std::string& header, const std::string& data,
                      uint64_t length_field = UINT64_MAX) {
  std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  uint64_t n = length_field == UINT64_MAX ? header.size() : length_field;
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << header << data;
  return path;
}

std::string load_error(const std::string& path) {
  try {
    load_safetensors(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::string float_bytes(std::initializer_list<float> values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.begin(), out.size());  // little-endian host
  return out;
}

}  // namespace

TEST(Safetensors, ReadsAFileBuiltFromTheSpecification) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
      R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  auto path = write_raw("spec.safetensors", header, float_bytes({1, 2, 3, 4.5f, -1}));
  auto file = load_safetensors(path);
  EXPECT_TRUE(torch::equal(file.tensors.at("a"), torch::tensor({1.0f, 2.0f, 3.0f})));
  EXPECT_TRUE(torch::equal(file.tensors.at("b"), torch::tensor({4.5f, -1.0f})));
  EXPECT_EQ(file.metadata.at("format"), "pt");
}

TEST(Safetensors, WriterRoundTripsEveryDtype) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f32", torch::randn({3, 4})},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"f16", torch::randn({2, 2}).to(torch::kHalf)},
      {"i64", torch::tensor({int64_t{1} << 40, int64_t{-3}})},
      {"i32", torch::tensor({7, -8}, torch::kInt)},
      {"u8", torch::tensor({255, 0}, torch::kByte)},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 3})},
  };
  auto path = temp_path("roundtrip.safetensors");
  save_safetensors(path, tensors, {{"step", "12"}});
  auto file = load_safetensors(path);
  EXPECT_EQ(file.metadata.at("step"), "12");
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(file.tensors.count(name)) << name;
    EXPECT_EQ(file.tensors.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(file.tensors.at(name), t)) << name;
  }
  // Data starts 8-byte aligned, as the reference writer does it.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Safetensors, CorruptFilesNameTheProblem) {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data = float_bytes({1, 2});
  struct Case {
    std::string name, header, data;
    uint64_t length_field;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"empty", "", "", UINT64_MAX, "corrupt header"},
      {"length", "{" + ok_entry + "}", data, 1u << 30, "exceeds the file"},
      {"json", "{\"a\":", data, UINT64_MAX, "corrupt header"},
      {"notobject", "[1,2]", data, UINT64_MAX, "not a JSON object"},
      {"dtype", R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", data, UINT64_MAX, "unsupported dtype Q7"},
      {"offsets", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}})", data, UINT64_MAX, "outside the data section"},
      {"size", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data, UINT64_MAX, "shape needs 12"},
      {"huge", R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data, UINT64_MAX, "impossible"},
      {"negative", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data, UINT64_MAX, "impossible"},
      {"fields", R"({"a":{"dtype":"F32"}})", data, UINT64_MAX, "expected {dtype, shape"},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data, UINT64_MAX, "overlap"},
      {"meta", R"({"__metadata__":{"k":1}})", "", UINT64_MAX, "not a string"},
  };
  for (const auto& c : cases) {
    auto path = write_raw(c.name + ".safetensors", c.header, c.data, c.length_field);
    std::string error = load_error(path);
    EXPECT_NE(error.find(path), std::string::npos) << c.name << ": " << error;
    EXPECT_NE(error.find(c.expected), std::string::npos) << c.name << ": " << error;
  }
  EXPECT_NE(load_error(temp_path("missing.safetensors")).find("cannot open"), std::string::npos);
  auto short_path = temp_path("short.safetensors");
  std::ofstream(short_path, std::ios::binary) << "abc";
  EXPECT_NE(load_error(short_path).find("too short"), std::string::npos);
}
