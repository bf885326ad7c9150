#include "trainer/faults/signals.h"

#include <unistd.h>

#include <atomic>
#include <initializer_list>
#include <csignal>

#include "trainer/base/exit_codes.h"

namespace muonrun {
namespace {

std::atomic<int> g_signal{0};

void on_signal(int signal) {
  if (g_signal.exchange(signal) != 0) {
    // Second signal: leave now. _exit skips destructors and atexit handlers,
    // so no half-written checkpoint gets renamed into place.
    static const char message[] = "\nmuonrun: second signal, exiting without a checkpoint\n";
    (void)!write(STDERR_FILENO, message, sizeof message - 1);
    _exit(kExitInterrupted);
  }
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int s : {SIGTERM, SIGINT, SIGUSR1}) sigaction(s, &action, nullptr);
  // A write to a socket whose peer has died (a Gloo pair, a heartbeat query)
  // must fail with EPIPE, which the fault handling turns into a diagnosis
  // ("rank 1 ... has died"), rather than kill this rank with SIGPIPE first:
  // CI saw rank 0 of a torchrun job end that way, with nothing said.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, nullptr);
}

bool stop_requested() { return g_signal.load() != 0; }
int stop_signal() { return g_signal.load(); }

}  // namespace muonrun
