// Exit codes of `muonrun train`, so that job scripts and schedulers can tell
// what happened (README, "Runs that fail").
#pragma once

namespace muonrun {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;                 // bad input, I/O error, bug: see the message
constexpr int kExitCommunicationFailure = 3;  // a rank died, hung, never arrived, or the network failed
constexpr int kExitDiverged = 4;              // diverged and stopped: policy stop, or rollbacks exhausted
constexpr int kExitStoppedBySignal = 75;      // SIGTERM/SIGINT/SIGUSR1: checkpoint written, resume later
constexpr int kExitInterrupted = 130;         // a second signal: left at once, last checkpoint untouched

}  // namespace muonrun
