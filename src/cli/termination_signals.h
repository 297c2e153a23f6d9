// TerminationSignals: turns SIGINT and SIGTERM into a graceful stop of a command. The
// constructor blocks both signals in the calling thread, so every thread started after it
// inherits the block and none is killed by them; a waiter thread takes them instead and
// calls the handler. A second signal ends the process at once (exit 128 + signal).
//
//   TerminationSignals signals;             // before any other thread starts
//   auto site = StartSite(...);
//   signals.OnSignal([&](int sig) { site->Abort("terminated by " + SignalName(sig)); });
//
// Thread-safety: OnSignal may be called from any thread. The signals stay blocked after
// destruction (a pending one must not kill a process that is already finishing): meant
// for the top of a command, not for library code. Children spawned with base::Subprocess
// start with an empty signal mask, so they are unaffected.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ember::cli {

class TerminationSignals {
 public:
  TerminationSignals();
  ~TerminationSignals();
  TerminationSignals(const TerminationSignals&) = delete;
  TerminationSignals& operator=(const TerminationSignals&) = delete;

  // Runs `handler(signal)` on the waiter thread for the first signal, at once if one
  // already arrived.
  void OnSignal(std::function<void(int)> handler);

 private:
  void WaitLoop();
  void Deliver(int signal);

  std::mutex mu_;
  // Guarded by mu_.
  std::function<void(int)> handler_;
  int received_ = 0;                 // first signal number, 0 = none yet
  bool delivered_ = false;

  std::atomic<bool> stop_{false};
  std::thread waiter_;
};

// "SIGTERM", "SIGINT", or "signal N".
std::string SignalName(int signal);

}  // namespace ember::cli
