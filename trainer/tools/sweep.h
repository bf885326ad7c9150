// `muonrun sweep FILE`: a grid of training runs (optimizer variant x lr
// multiplier x seed) from one YAML file, one run directory each, then a
// results table and loss-curve plots (trainer/sweep_report.h).
//
//   name: bc_zi                       # output: runs/sweeps/<name> unless --out
//   title: AdamW bias correction x zero init
//   configs: [tiny_gpt.yaml]          # config files, relative to this file
//   set: {train.steps: 300}           # config keys for every run
//   seeds: [0, 1]
//   lr_multipliers: [0.5, 1, 2]       # every lr of a run (Muon's and AdamW's) times each
//   variants:
//     - name: AdamW (BC, ZI)
//       label: AdamW                  # optional, shown in the table
//       set: {optim.adam.bias_correction: true}
//       lr_multipliers: [1]           # optional, replaces the global list
//
// Each run is `muonrun train` in a child process (so a diverged or failed run
// only fails its own row, and --launcher "mpirun -np 2" makes every run
// distributed); runs whose metrics already reach the last step are kept, so
// an interrupted sweep continues where it stopped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config/config.h"

namespace muonrun {

struct SweepVariant {
  std::string name, label;
  std::vector<std::string> overrides;  // key=value
  std::vector<double> lr_multipliers;
};

struct SweepPlan {
  std::string name, title;
  std::vector<std::string> config_files;
  std::vector<std::string> overrides;
  std::vector<int64_t> seeds;
  std::vector<SweepVariant> variants;
};

// Reads a sweep file; errors name the file and line.
SweepPlan load_sweep(const std::string& file);

struct SweepRun {
  size_t variant;  // index into SweepPlan::variants
  double lr_multiplier;
  int64_t seed;
  std::string id;  // also its run directory name
  Config config;
};

// Every run of the grid with its resolved config (run.dir under `out_dir`/runs).
std::vector<SweepRun> expand_sweep(const SweepPlan& plan, const std::string& out_dir);

struct SweepOptions {
  std::string file;
  std::string out_dir;   // run directories; default runs/sweeps/<name>
  std::string report_dir;  // results.md, results.csv, plots/; default out_dir
  std::string launcher;  // prefix of each train command, e.g. "mpirun -np 2"
  bool report_only = false;  // no runs: tables and plots from what is there
};

void run_sweep(const SweepOptions& options);

// `s` as one word for /bin/sh, whatever it holds: in single quotes, each '
// written as '\'' (for the commands the sweep and its report run).
std::string shell_quote(const std::string& s);

}  // namespace muonrun
