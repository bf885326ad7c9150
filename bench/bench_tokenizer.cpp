// Single-thread tokenizer throughput, to catch speed regressions in the hot
// path of `muonrun prepare`: bench_tokenizer VOCAB_DIR TEXT_FILE [REPEATS].
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>

#include "trainer/data/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s VOCAB_DIR TEXT_FILE [REPEATS]\n", argv[0]);
    return 2;
  }
  try {
    std::string dir = argv[1];
    auto tokenizer = muonrun::Tokenizer::load(dir + "/encoder.json", dir + "/vocab.bpe");
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw std::runtime_error(std::string(argv[2]) + ": cannot open");
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string text = buffer.str();
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
    for (int r = 0; r < repeats; ++r) {
      // The first pass fills the BPE cache; later passes show the warm rate.
      auto start = std::chrono::steady_clock::now();
      size_t tokens = tokenizer.encode(text).size();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("pass %d: %zu bytes -> %zu tokens in %.3f s: %.2f MB/s\n", r + 1, text.size(),
                  tokens, s, text.size() / s / 1e6);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
