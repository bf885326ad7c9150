// muonrun: the command-line tool. Each subcommand parses its options here and
// hands over to the library function that does the work.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "comm/communicator.h"
#include "trainer/config/config.h"
#include "trainer/data/prepare.h"
#include "trainer/base/exit_codes.h"
#include "trainer/base/logging.h"
#include "trainer/tools/compare.h"
#include "trainer/tools/eval.h"
#include "trainer/tools/sample.h"
#include "trainer/tools/sweep.h"
#include "trainer/tools/toy.h"
#include "trainer/run/train.h"

using namespace muonrun;

namespace {

struct ConfigOptions {
  std::vector<std::string> files;
  std::vector<std::string> overrides;
};

void add_config_options(CLI::App* cmd, ConfigOptions& options) {
  cmd->add_option("-c,--config", options.files, "YAML config file (repeatable; later wins)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", options.overrides, "override one key: --set optim.muon.lr=0.05")
      ->type_name("KEY=VALUE");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"muonrun: NanoGPT speedrun trainer (Muon + AdamW, data parallel)"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, choice_list(kLogLevelChoices))
      ->check(CLI::IsMember(choice_names(kLogLevelChoices)));

  ConfigOptions config_options;
  auto* config_cmd = app.add_subcommand("config", "print the effective config as YAML");
  add_config_options(config_cmd, config_options);

  PrepareOptions prepare;
  auto* prepare_cmd = app.add_subcommand("prepare", "tokenize text into GPT-2 token shards");
  prepare_cmd->add_option("--input", prepare.inputs, ".txt / .jsonl files, optionally .xz / .gz")
      ->required()
      ->check(CLI::ExistingFile);
  prepare_cmd->add_option("--out", prepare.out_dir, "output directory for train_*.bin, val_*.bin")
      ->required();
  prepare_cmd->add_option("--val-input", prepare.val_inputs, "validation text, kept apart")
      ->check(CLI::ExistingFile);
  prepare_cmd->add_option("--val-tokens", prepare.val_tokens,
                          "without --val-input: the first N tokens go to val")
      ->capture_default_str();
  prepare_cmd->add_option("--shard-tokens", prepare.shard_tokens, "tokens per shard")
      ->capture_default_str();
  prepare_cmd->add_option("--vocab", prepare.vocab_dir, "directory with encoder.json, vocab.bpe")
      ->capture_default_str();
  prepare_cmd->add_option("--threads", prepare.threads, "tokenizer threads")->capture_default_str();
  prepare_cmd->add_flag("--split-docs", prepare.split_docs,
                        ".txt inputs: a document per paragraph (lines up to a blank line), "
                        "not one per file");

  ConfigOptions train_config;
  TrainOptions train;
  auto* train_cmd = app.add_subcommand("train", "train a GPT (one process, or one rank of many)");
  add_config_options(train_cmd, train_config);
  train_cmd->add_flag("--resume", train.resume, "continue from the newest complete checkpoint of the run");
  train_cmd->add_option("--checkpoint", train.checkpoint, "continue from this checkpoint directory")
      ->check(CLI::ExistingDirectory);
  train_cmd->add_flag("--force", train.force, "resume even if the model or data config changed");

  SampleOptions sample;
  auto* sample_cmd = app.add_subcommand("sample", "generate text from a checkpoint");
  sample_cmd->add_option("--checkpoint", sample.checkpoint, "checkpoint directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  sample_cmd->add_option("--prompt", sample.prompt, "text to continue")->capture_default_str();
  sample_cmd->add_option("--max-tokens", sample.max_tokens, "tokens to generate")->capture_default_str();
  sample_cmd->add_option("--temperature", sample.temperature, "0: greedy")->capture_default_str();
  sample_cmd->add_option("--top-k", sample.top_k, "sample among the k likeliest (0: all)")
      ->capture_default_str();
  sample_cmd->add_option("--seed", sample.seed, "sampling seed")->capture_default_str();
  sample_cmd->add_option("--vocab", sample.vocab_dir, "directory with encoder.json, vocab.bpe")
      ->capture_default_str();
  sample_cmd->add_option("--device", sample.device, choice_list(kRunDeviceChoices))
      ->check(CLI::IsMember(choice_names(kRunDeviceChoices)))
      ->capture_default_str();

  EvalOptions eval;
  ConfigOptions eval_config;
  auto* eval_cmd = app.add_subcommand("eval", "validation loss (and HellaSwag accuracy) of a checkpoint, on any shards and ranks");
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "checkpoint directory, or a run directory (its newest)")
      ->required();
  add_config_options(eval_cmd, eval_config);
  eval_cmd->add_option("--hellaswag", eval.hellaswag, "also HellaSwag accuracy on this .jsonl (hellaswag_val.jsonl)")
      ->check(CLI::ExistingFile);
  eval_cmd->add_option("--vocab", eval.vocab_dir, "directory with encoder.json, vocab.bpe (for --hellaswag)")
      ->capture_default_str();

  CompareOptions compare;
  auto* compare_cmd = app.add_subcommand("compare", "loss curves (PNG) and a table of several runs from their metrics.jsonl");
  compare_cmd->add_option("runs", compare.run_dirs, "run directories")->required();
  compare_cmd->add_option("--out", compare.out_dir, "directory for compare.md and the PNGs")->required();
  compare_cmd->add_option("--target", compare.target,
                          "val loss for the time-to-target column and the groups' t-test (default: the runs' "
                          "train.val_loss_target; 3.28 for the t-test without one)");
  compare_cmd->add_option("--group", compare.group,
                          "one group of this name for every run (default: groups by config, all keys but run.*)");

  ToyOptions toy;
  ConfigOptions toy_config;
  auto* toy_cmd = app.add_subcommand("toy", "compare optimizers on small toy problems (linreg, quadratic, softmax, mlp)");
  add_config_options(toy_cmd, toy_config);
  toy_cmd->add_option("--problems", toy.problems, "linreg, quadratic, softmax, mlp (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(toy_problems()));
  toy_cmd->add_option("--optimizers", toy.optimizers, "names from the built-in list (default: all)")->delimiter(',');
  toy_cmd->add_option("--lrs", toy.lrs, "learning rates tried (the best is reported)")->delimiter(',')->capture_default_str();
  toy_cmd->add_option("--steps", toy.steps, "steps per run")->capture_default_str();
  toy_cmd->add_option("--seed", toy.seed, "seed of data and initial weights")->capture_default_str();
  toy_cmd->add_option("--csv", toy.csv, "also write every run's losses to this CSV file");

  SweepOptions sweep;
  auto* sweep_cmd = app.add_subcommand("sweep", "run a grid of training runs from a sweep file, then tabulate and plot");
  sweep_cmd->add_option("file", sweep.file, "sweep YAML (see configs/ablations/)")->required()->check(CLI::ExistingFile);
  sweep_cmd->add_option("--out", sweep.out_dir, "directory of the runs (default: runs/sweeps/<name>)");
  sweep_cmd->add_option("--report-dir", sweep.report_dir, "results.md, results.csv and plots/ (default: --out)");
  sweep_cmd->add_option("--launcher", sweep.launcher, "prefix of each train command, e.g. \"mpirun -np 2\"");
  sweep_cmd->add_flag("--report-only", sweep.report_only, "run nothing: tables and plots from the runs there");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and succeeds; every other command-line error is bad input.
    return app.exit(e) == 0 ? kExitOk : kExitError;
  }
  try {
    init_console_logging(spdlog_level(find_choice(kLogLevelChoices, log_level)->value));  // checked by CLI::IsMember
    if (config_cmd->parsed()) {
      std::cout << to_yaml(load_config(config_options.files, config_options.overrides));
    } else if (prepare_cmd->parsed()) {
      run_prepare(prepare);
    } else if (train_cmd->parsed()) {
      // An explicit --log-level beats the config's run.log_level.
      if (app.count("--log-level") > 0) train_config.overrides.push_back("run.log_level=" + log_level);
      const auto summary = run_training(load_config(train_config.files, train_config.overrides), train);
      if (summary.stopped_by_signal) return kExitStoppedBySignal;
    } else if (sample_cmd->parsed()) {
      std::cout << run_sampling(sample) << "\n";
    } else if (eval_cmd->parsed()) {
      eval.config_files = eval_config.files;
      eval.overrides = eval_config.overrides;
      const EvalResult result = run_evaluation(eval);
      if (result.rank == 0) std::cout << eval_report(result);
    } else if (compare_cmd->parsed()) {
      std::cout << compare_runs(compare).table;
    } else if (toy_cmd->parsed()) {
      toy.config_files = toy_config.files;
      toy.overrides = toy_config.overrides;
      std::cout << run_toy_comparison(toy);
    } else if (sweep_cmd->parsed()) {
      run_sweep(sweep);
    }
  } catch (const TrainingStopped& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exit_code;
  } catch (const CommunicationError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitCommunicationFailure;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitError;
  }
  return 0;
}
