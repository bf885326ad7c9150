// HellaSwag (Zellers et al. 2019, arXiv:1905.07830; data: github.com/rowanz/hellaswag,
// data/hellaswag_val.jsonl, 10,042 examples) scored in the completion style
// of llm.c (karpathy/llm.c, dev/data/hellaswag.py) and build-nanogpt
// (karpathy/build-nanogpt, hellaswag.py): each of the four endings is
// appended to the context as GPT-2 tokens of " " + ending, and scored by the
// model's cross-entropy on the ending's tokens given everything before them.
// acc picks the ending of least total loss, acc_norm the least mean loss per
// ending token; llm.c reports acc 0.2859, acc_norm 0.2955 for GPT-2 124M.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "models/language_model.h"
#include "trainer/data/tokenizer.h"

namespace muonrun {

struct HellaswagExample {
  int64_t line = 0;  // in the file, for messages
  std::vector<int64_t> context;
  std::array<std::vector<int64_t>, 4> endings;
  int label = 0;  // the right ending
};

// One JSON object per line with "ctx" (string), "endings" (4 strings) and
// "label" (0..3), as the public files (other fields are ignored; blank lines
// skipped). Throws naming the file and line of a bad one.
std::vector<HellaswagExample> read_hellaswag(const std::string& path, const Tokenizer& tokenizer);

struct EndingLoss {
  double total = 0;    // summed cross-entropy over the ending's tokens
  int64_t tokens = 0;  // how many
};

// The four endings' losses, each context + ending scored as one document
// (LanguageModelImpl::document_logits). A context too long for `seq_len`
// (model.seq_len) loses its first tokens (the ending never does).
std::array<EndingLoss, 4> score_endings(LanguageModelImpl& model, int64_t seq_len, const HellaswagExample& example);

struct EndingPick {
  int by_total;  // argmin of total loss: counts for acc
  int by_mean;   // argmin of mean loss per token: counts for acc_norm
};

// Ties go to the lower index, as torch.argmin.
EndingPick pick_ending(const std::array<EndingLoss, 4>& losses);

struct HellaswagResult {
  int64_t examples = 0, correct = 0, correct_norm = 0;
  double acc() const { return examples ? static_cast<double>(correct) / examples : 0; }
  double acc_norm() const { return examples ? static_cast<double>(correct_norm) / examples : 0; }
};

// Rank r of `world` scores examples r, r + world, ...; the counts are summed
// over the ranks (`comm` null for one process).
HellaswagResult evaluate_hellaswag(LanguageModelImpl& model, int64_t seq_len,
                                   const std::vector<HellaswagExample>& examples, int rank, int world,
                                   Communicator* comm, const torch::Device& device);

}  // namespace muonrun
