#include "trainer/tools/eval.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "comm/world.h"
#include "trainer/base/exit_codes.h"
#include "trainer/base/logging.h"
#include "trainer/config/config.h"
#include "trainer/data/data_loader.h"
#include "trainer/io/checkpoint.h"
#include "trainer/run/device.h"
#include "trainer/run/evaluate.h"
#include "trainer/run/train_step.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

// The checkpoint directory to evaluate and its step, or an error saying what
// `dir` is not.
std::pair<std::string, int64_t> find_checkpoint(const std::string& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error("--checkpoint " + dir + ": no such directory");
  std::string checkpoint = dir;
  if (fs::is_directory(fs::path(dir) / "checkpoints")) {
    const auto latest = find_latest_checkpoint(dir);
    if (!latest) throw std::runtime_error("--checkpoint " + dir + ": the run has no complete checkpoint");
    checkpoint = *latest;
  }
  const fs::path marker = fs::path(checkpoint) / "COMPLETE";
  if (!fs::exists(marker))
    throw std::runtime_error("--checkpoint " + checkpoint +
                             ": not a complete checkpoint (no COMPLETE file; `muonrun train` writes "
                             "<run>/checkpoints/step_N/ with model.safetensors, config.yaml and COMPLETE)");
  int64_t step = -1;
  std::ifstream(marker) >> step;
  if (step < 0) throw std::runtime_error(marker.string() + ": expected the checkpoint's step");
  return {checkpoint, step};
}

}  // namespace

EvalResult run_evaluation(const EvalOptions& options) {
  EvalResult result;
  std::tie(result.checkpoint, result.step) = find_checkpoint(options.checkpoint);
  const auto files = options.config_files.empty()
                         ? std::vector<std::string>{(fs::path(result.checkpoint) / "config.yaml").string()}
                         : options.config_files;
  const Config config = load_config(files, options.overrides);

  // The same ranks and devices as `muonrun train` (trainer/run/train.cpp).
  const LaunchInfo launch = detect_launch();
  init_console_logging(spdlog::default_logger()->level(), launch.rank);
  const torch::Device device = resolve_device(config.run.device, launch.local_rank);
  configure_host(config.run.cpu_threads, launch.local_size);
  World world(launch, device, std::chrono::milliseconds(static_cast<int64_t>(config.comm.timeout_s * 1000)));
  result.rank = world.rank();
  result.world = world.size();
  try {
    const auto flat = to_yaml(config);
    world.check_same_run(fnv1a(flat.data(), flat.size()));
    LanguageModel model = make_model(config, device);
    const BatchPlan plan = plan_batches(config, world.size(), model->layout());
    load_model_weights(result.checkpoint, *model);
    const auto val = make_validation_batches(config, model->layout(), plan.val_shape(), world.rank(), world.size());
    std::vector<HellaswagExample> examples;  // read first: a bad line fails before any work
    if (!options.hellaswag.empty())
      examples = read_hellaswag(options.hellaswag, Tokenizer::load(options.vocab_dir + "/encoder.json",
                                                                   options.vocab_dir + "/vocab.bpe"));
    model->set_progress({config.train.steps, config.train.steps, config.schedule.extension_steps});  // the final validation's structure
    const double local = evaluate(*model, *val, plan.val_batches, device);
    result.val_loss = mean_over_ranks(world.comm(), device, {torch::tensor(local)})[0];
    result.val_tokens = config.train.val_tokens;
    result.val_pattern = config.data.val;
    if (!examples.empty())
      result.hellaswag = evaluate_hellaswag(*model, config.model.seq_len, examples, world.rank(), world.size(),
                                            world.comm(), device);
  } catch (const std::exception& e) {
    if (world.size() > 1 && world.launch().launcher == Launcher::Mpi) {
      // MPI_Abort ends the job (no rank waits for this one until its
      // timeout) before main() could print the error.
      std::cerr << "error: " << e.what() << "\n";
      world.abort(kExitError);
    }
    throw;
  }
  return result;
}

std::string eval_report(const EvalResult& r) {
  std::string out = fmt::format("{} (step {}): val_loss {} over {} tokens of {} on {} rank(s)\n", r.checkpoint,
                                r.step, r.val_loss, r.val_tokens, r.val_pattern, r.world);
  if (r.hellaswag)
    out += fmt::format("hellaswag: acc_norm {:.4f} acc {:.4f} ({} and {} right of {} examples)\n",
                       r.hellaswag->acc_norm(), r.hellaswag->acc(), r.hellaswag->correct_norm,
                       r.hellaswag->correct, r.hellaswag->examples);
  return out;
}

}  // namespace muonrun
