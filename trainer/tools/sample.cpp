#include "trainer/tools/sample.h"

#include <filesystem>

#include "trainer/io/checkpoint.h"
#include "trainer/data/tokenizer.h"
#include "trainer/run/device.h"
#include "trainer/run/train_step.h"

namespace muonrun {

std::vector<int64_t> generate(LanguageModelImpl& model, int64_t vocab_size, int64_t context,
                              std::vector<int64_t> tokens, int64_t count, double temperature, int64_t top_k,
                              torch::Generator& generator) {
  torch::NoGradGuard no_grad;
  model.eval();
  const auto device = model.parameters().front().device();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - context);
    auto window = torch::tensor(std::vector<int64_t>(tokens.begin() + start, tokens.end()), torch::kLong).to(device);
    auto logits = model.document_logits(window)[-1].narrow(0, 0, vocab_size).to(torch::kCPU);
    int64_t next;
    if (temperature <= 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      logits = logits / temperature;
      if (top_k > 0 && top_k < vocab_size) {
        auto kth = std::get<0>(logits.topk(top_k)).min();
        logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
      }
      next = torch::multinomial(torch::softmax(logits, -1), 1, false, generator).item<int64_t>();
    }
    tokens.push_back(next);
  }
  return tokens;
}

std::string run_sampling(const SampleOptions& options) {
  namespace fs = std::filesystem;
  std::string checkpoint = options.checkpoint;
  if (fs::is_directory(fs::path(checkpoint) / "checkpoints")) {
    auto latest = find_latest_checkpoint(checkpoint);
    if (!latest) throw std::runtime_error(checkpoint + ": the run has no complete checkpoint");
    checkpoint = *latest;
  }
  const Config config = checkpoint_config(checkpoint);
  const Choice<RunDevice>* setting = find_choice(kRunDeviceChoices, options.device);
  if (!setting)
    throw std::invalid_argument("--device: '" + options.device + "' is not one of " + choice_list(kRunDeviceChoices));
  const auto device = resolve_device(setting->value, 0);
  configure_host(0, 1);
  LanguageModel model = make_model(config, device);
  load_model_weights(checkpoint, *model);

  const auto tokenizer = Tokenizer::load(options.vocab_dir + "/encoder.json", options.vocab_dir + "/vocab.bpe");
  std::vector<int64_t> tokens = {Tokenizer::kEndOfText};
  for (uint16_t t : tokenizer.encode(options.prompt)) tokens.push_back(t);
  auto generator = at::detail::createCPUGenerator(static_cast<uint64_t>(options.seed));
  auto out = generate(*model, config.model.vocab_size, config.model.seq_len, tokens, options.max_tokens,
                      options.temperature, options.top_k, generator);
  std::vector<uint16_t> text(out.begin() + 1, out.end());
  return tokenizer.decode(text);
}

}  // namespace muonrun
