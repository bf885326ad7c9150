#include "trainer/tools/hellaswag.h"

#include <cmath>
#include <fstream>
#include <stdexcept>

#include "trainer/base/json.h"
#include "trainer/base/progress.h"
#include "trainer/run/train_step.h"

namespace muonrun {
namespace {

std::vector<int64_t> tokens_of(const Tokenizer& tokenizer, const std::string& text) {
  const auto t = tokenizer.encode(text);
  return {t.begin(), t.end()};
}

HellaswagExample parse_example(const std::string& line, const std::string& where, const Tokenizer& tokenizer) {
  const auto v = json::parse(line, where);
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(where + ": " + what + " (expected {\"ctx\": string, \"endings\": [4 strings], "
                             "\"label\": 0..3}, as hellaswag_val.jsonl)");
  };
  if (!v.is_object()) fail("not a JSON object");
  const auto* ctx = v.find("ctx");
  if (!ctx || !ctx->is_string()) fail("no string \"ctx\"");
  if (ctx->string.empty()) fail("empty \"ctx\"");
  const auto* endings = v.find("endings");
  if (!endings || !endings->is_array() || endings->array.size() != 4) fail("\"endings\" is not an array of 4");
  const auto* label = v.find("label");
  if (!label) fail("no \"label\" (the test split has none: use hellaswag_val.jsonl)");
  int64_t l = -1;
  try {
    l = label->as_int64();
  } catch (const json::ParseError&) {
  }
  if (l < 0 || l > 3) fail("\"label\" is not an integer 0..3");
  HellaswagExample example;
  example.label = static_cast<int>(l);
  example.context = tokens_of(tokenizer, ctx->string);
  for (size_t i = 0; i < 4; ++i) {
    if (!endings->array[i].is_string()) fail("ending " + std::to_string(i) + " is not a string");
    // " " + ending: the context ends without the space GPT-2's tokens carry in front.
    example.endings[i] = tokens_of(tokenizer, " " + endings->array[i].string);
  }
  return example;
}

}  // namespace

std::vector<HellaswagExample> read_hellaswag(const std::string& path, const Tokenizer& tokenizer) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<HellaswagExample> examples;
  int64_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    examples.push_back(parse_example(line, path + " line " + std::to_string(line_number), tokenizer));
    examples.back().line = line_number;
  }
  if (examples.empty()) throw std::runtime_error(path + ": no examples");
  return examples;
}

std::array<EndingLoss, 4> score_endings(LanguageModelImpl& model, int64_t seq_len, const HellaswagExample& example) {
  torch::NoGradGuard no_grad;
  const auto device = model.parameters().front().device();
  const int64_t window = seq_len + 1;  // tokens of a row: seq_len inputs, each with its target
  std::array<EndingLoss, 4> out;
  for (size_t i = 0; i < 4; ++i) {
    const auto& ending = example.endings[i];
    const int64_t keep = std::min<int64_t>(example.context.size(), window - static_cast<int64_t>(ending.size()));
    if (ending.empty() || keep < 1)
      throw std::runtime_error("hellaswag line " + std::to_string(example.line) + ": ending " + std::to_string(i) +
                               " has " + std::to_string(ending.size()) + " tokens; model.seq_len " +
                               std::to_string(seq_len) + " needs 1 to seq_len");
    std::vector<int64_t> row(example.context.end() - keep, example.context.end());
    row.insert(row.end(), ending.begin(), ending.end());
    const auto n = static_cast<int64_t>(row.size());
    const auto tokens = torch::tensor(row, torch::kLong).to(device);
    // One document: context + ending. Its logits are fp32 and soft-capped,
    // what the training loss sees; the target at position t is token t + 1,
    // so the ending's tokens are the targets of positions keep - 1 .. n - 2.
    const auto logits = model.document_logits(tokens.narrow(0, 0, n - 1));
    const auto losses = torch::nn::functional::cross_entropy(
        logits.narrow(0, keep - 1, n - keep), tokens.narrow(0, keep, n - keep),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    out[i] = {losses.to(torch::kCPU, torch::kDouble).sum().item<double>(), static_cast<int64_t>(ending.size())};
  }
  return out;
}

EndingPick pick_ending(const std::array<EndingLoss, 4>& losses) {
  EndingPick pick{0, 0};
  for (int i = 1; i < 4; ++i) {
    if (losses[i].total < losses[pick.by_total].total) pick.by_total = i;
    if (losses[i].total / losses[i].tokens < losses[pick.by_mean].total / losses[pick.by_mean].tokens) pick.by_mean = i;
  }
  return pick;
}

HellaswagResult evaluate_hellaswag(LanguageModelImpl& model, int64_t seq_len,
                                   const std::vector<HellaswagExample>& examples, int rank, int world,
                                   Communicator* comm, const torch::Device& device) {
  model.eval();
  HellaswagResult local;
  const int64_t n = examples.size(), mine = n > rank ? (n - rank + world - 1) / world : 0;
  Progress progress("hellaswag", static_cast<double>(mine), "examples", 10.0, /*transient=*/true);
  for (size_t i = rank; i < examples.size(); i += world) {
    const EndingPick pick = pick_ending(score_endings(model, seq_len, examples[i]));
    local.examples += 1;
    local.correct += pick.by_total == examples[i].label;
    local.correct_norm += pick.by_mean == examples[i].label;
    progress.update(static_cast<double>(local.examples));
  }
  model.train();
  // Counts below 2^24 are exact in the float all-reduce.
  const auto sums = sum_over_ranks(comm, device,
                                   {torch::tensor(static_cast<double>(local.examples)),
                                    torch::tensor(static_cast<double>(local.correct)),
                                    torch::tensor(static_cast<double>(local.correct_norm))});
  HellaswagResult total;
  total.examples = std::llround(sums[0]);
  total.correct = std::llround(sums[1]);
  total.correct_norm = std::llround(sums[2]);
  return total;
}

}  // namespace muonrun
