// Replays every file of tests/fuzz/corpus/<target>/ (seeds, inputs libFuzzer
// found interesting, reproducers of fixed findings) through the same target
// bodies as the fuzzers, so that the g++ suite keeps them as regression tests
// without clang. A finding aborts the process, after naming the file.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "tests/fuzz/targets.h"

namespace fs = std::filesystem;
using muonrun::fuzz::Target;

namespace {

// The file being replayed, for the SIGABRT handler: a finding aborts, and
// the log must say which corpus file it was.
char current_file[4096];

void name_file_on_abort(int) {
  const char prefix[] = "\nfuzz corpus: aborted while replaying ";
  (void)!::write(STDERR_FILENO, prefix, sizeof prefix - 1);
  (void)!::write(STDERR_FILENO, current_file, std::strlen(current_file));
  (void)!::write(STDERR_FILENO, "\n", 1);
  ::signal(SIGABRT, SIG_DFL);
  ::raise(SIGABRT);
}

std::vector<fs::path> corpus_files(const Target& target) {
  const fs::path dir = fs::path(MUONRUN_SOURCE_DIR) / "tests/fuzz/corpus" / target.name;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class FuzzCorpus : public testing::TestWithParam<Target> {};

}  // namespace

namespace muonrun::fuzz {
// Test names and failures show the target's name, not its bytes.
void PrintTo(const Target& target, std::ostream* out) { *out << target.name; }
}  // namespace muonrun::fuzz

TEST_P(FuzzCorpus, EveryFileIsAcceptedOrRefusedWithItsDocumentedError) {
  const std::vector<fs::path> files = corpus_files(GetParam());
  ASSERT_FALSE(files.empty()) << "no corpus for " << GetParam().name;
  ::signal(SIGABRT, name_file_on_abort);
  for (const fs::path& file : files) {
    std::strncpy(current_file, file.c_str(), sizeof current_file - 1);
    GetParam().run(read_bytes(file));
  }
  ::signal(SIGABRT, SIG_DFL);
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzCorpus, testing::ValuesIn(muonrun::fuzz::all_targets()),
                         [](const testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });
