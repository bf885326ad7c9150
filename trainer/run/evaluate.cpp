#include "trainer/run/evaluate.h"

#include "trainer/base/progress.h"

namespace muonrun {

double evaluate(LanguageModelImpl& model, BatchSource& val, int64_t batches, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  model.eval();
  val.reset();
  Progress progress("validation", static_cast<double>(batches), "batches", 10.0,
                    /*transient=*/true);
  auto total = torch::zeros({}, torch::dtype(torch::kFloat).device(device));
  for (int64_t i = 0; i < batches; ++i) {
    const Loss loss = model.loss(val.next(device));
    total += loss.objective * loss.per_token;
    progress.update(static_cast<double>(i + 1));
  }
  model.train();
  return total.item<double>() / static_cast<double>(batches);
}

}  // namespace muonrun
