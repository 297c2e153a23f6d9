#include "cli/termination_signals.h"

#include <signal.h>

#include <cstdlib>
#include <ctime>

namespace ember::cli {

namespace {

sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

TerminationSignals::TerminationSignals() {
  sigset_t set = TerminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  waiter_ = std::thread([this] { WaitLoop(); });
}

TerminationSignals::~TerminationSignals() {
  stop_ = true;
  waiter_.join();
}

void TerminationSignals::OnSignal(std::function<void(int)> handler) {
  int pending = 0;
  {
    std::lock_guard lock(mu_);
    handler_ = handler;
    if (received_ != 0 && !delivered_) {
      delivered_ = true;
      pending = received_;
    }
  }
  if (pending != 0) handler(pending);
}

// Polls (rather than blocking in sigwait) so the destructor can stop it.
void TerminationSignals::WaitLoop() {
  const sigset_t set = TerminationSet();
  const timespec tick{0, 100'000'000};
  while (!stop_) {
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig > 0) Deliver(sig);
  }
}

void TerminationSignals::Deliver(int signal) {
  std::function<void(int)> handler;
  {
    std::lock_guard lock(mu_);
    if (received_ != 0) std::_Exit(128 + signal);  // asked twice: stop now
    received_ = signal;
    if (!handler_) return;
    delivered_ = true;
    handler = handler_;
  }
  handler(signal);
}

std::string SignalName(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "signal " + std::to_string(signal);
  }
}

}  // namespace ember::cli
