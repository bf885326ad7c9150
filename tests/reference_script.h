// Running the tests' references (tests/reference/*.py) with the Python of
// MUONRUN_PYTHON, which has torch, numpy and safetensors; tests without one
// configured skip (REQUIRE_PYTHON). No LibTorch here, so that tests of the
// torch-free layers (the data loaders) use it too.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_helpers.h"

namespace muonrun::tests {

inline const std::string kPython = MUONRUN_PYTHON;
inline const std::string kScripts = std::string(MUONRUN_SOURCE_DIR) + "/tests/reference/";

#define REQUIRE_PYTHON()                                                                               \
  do {                                                                                                 \
    if (::muonrun::tests::kPython.empty()) GTEST_SKIP() << "no Python with torch configured (MUONRUN_PYTHON)"; \
  } while (0)

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct ScriptRun {
  int rc;
  std::string output;  // stdout and stderr
};

// Runs tests/reference/<script> with `args` in `dir`.
inline ScriptRun run_script(const std::string& script, const std::vector<std::string>& args,
                            const std::filesystem::path& dir) {
  const std::filesystem::path log = dir / (script + ".log");
  std::string cmd = "cd " + quote(dir.string()) + " && " + quote(kPython) + " " + quote(kScripts + script);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " > " + quote(log.string()) + " 2>&1";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

}  // namespace muonrun::tests
