// Preemption: the first SIGTERM, SIGINT or SIGUSR1 (Slurm's warning signal
// in launch/slurm.sbatch) asks the run to stop after the current step, with a
// checkpoint; a second one ends the process at once (exit code 130) without
// touching the last complete checkpoint. SIGPIPE is ignored: a dead peer's
// socket gives a write error that the fault handling reports.
#pragma once

namespace muonrun {

void install_stop_handlers();
// Whether a stop was asked for (async-signal-safe flag).
bool stop_requested();
// The signal that asked, for logs (0 if none).
int stop_signal();

}  // namespace muonrun
