// The results of a sweep (trainer/sweep.h), from the runs' metrics.jsonl:
//   results.md   per variant its best lr multiplier, with the final
//                validation loss as mean ± std over seeds (like the tables of
//                Crawshaw's Muon-variants talk, optim/presets.h), and the whole
//                variant x lr grid
//   results.csv  one row per run
//   plots/       <name>_val.png, <name>_train.png (loss curves of each
//                variant at its best lr) and <name>_lr.png (final loss against
//                the lr multiplier), rendered by gnuplot (trainer/tools/plots.h;
//                without gnuplot only the scripts are written, with a warning)
#pragma once

#include <string>
#include <vector>

#include "trainer/tools/sweep.h"

namespace muonrun {

// `statuses[i]`: how runs[i] ended ("ok", or why not). Writes into `report_dir`.
void write_sweep_report(const SweepPlan& plan, const std::vector<SweepRun>& runs,
                        const std::vector<std::string>& statuses, const std::string& report_dir);

}  // namespace muonrun
