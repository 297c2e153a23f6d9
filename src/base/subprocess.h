// Subprocess: runs a program (a user's training script) as a child process whose output is
// read line by line, whose exit is observed without blocking forever, and which cannot
// outlive us.
//
//   EMBER_ASSIGN_OR_RETURN(auto proc, Subprocess::Spawn({.argv = {"python3", "train.py"},
//       .on_line = [](std::string_view line, bool is_stderr) { EMBER_LOG_INFO("{}", line); }}));
//   Result<int> status = proc->Wait(std::chrono::minutes(30));  // raw wait status
//   if (status.ok() && ExitCodeOf(*status) != 0) return Status::Aborted(proc->DescribeExit());
//
// The child:
//   - runs in its own process group (so Terminate reaches the workers it forks),
//   - gets SIGKILL if this process dies (PR_SET_PDEATHSIG; every child is forked from one
//     long-lived internal thread, because the kernel sends that signal when the *thread*
//     that forked exits, not the process),
//   - reads stdin from /dev/null, starts with default signal dispositions and an empty
//     signal mask, and inherits no file descriptor other than 0, 1 and 2.
// A program that cannot be executed (not found, not executable, bad cwd) makes Spawn fail;
// it is never reported as a started process that then exits with 127.
//
// Output: stdout and stderr go through pipes drained by one reader thread per Subprocess,
// split on '\n' (a trailing "\r" is dropped, a partial last line is delivered at EOF, and
// a line longer than 64 KiB is delivered in 64 KiB pieces). A slow on_line slows the child
// down (pipe backpressure); it never buffers without bound.
//
// Thread-safety: every method may be called from any thread, concurrently.
// REQUIRES: on_line must not call Wait, Terminate or destroy the Subprocess (it runs on the
// reader thread, which those calls join); it may call LastStderrLines, pid and Poll.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ember::base {

// Members have default initializers so designated initializers compile warning-free.
struct SpawnOptions {
  // argv[0] is looked up in PATH (the PATH in `env` if given there) unless it contains '/'.
  std::vector<std::string> argv = {};
  // Added to, or overriding, the current environment.
  std::map<std::string, std::string> env = {};
  // Working directory of the child; empty = inherit ours.
  std::string cwd = {};
  // Called with each output line, without its '\n', from the reader thread.
  std::function<void(std::string_view line, bool is_stderr)> on_line = {};
  // How many of the last stderr lines LastStderrLines keeps, for error messages.
  size_t keep_stderr_lines = 20;
};

class Subprocess {
 public:
  // NotFound if the program does not exist ("cannot execute 'pythonX': No such file or
  // directory"), FailedPrecondition if it cannot be executed or cwd cannot be entered,
  // InvalidArgument for an empty argv, ResourceExhausted/Internal if fork or pipe fails.
  static Result<std::unique_ptr<Subprocess>> Spawn(SpawnOptions options);

  // Terminates the process group (grace 2 s) if the child is still running, then stops
  // and joins the reader thread.
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }

  // Non-blocking: the raw wait status (see <sys/wait.h>) once the child has exited and been
  // reaped, else nullopt. Output may still be in flight; Wait also collects it.
  std::optional<int> Poll();

  // Blocks until the child exits, then returns its raw wait status. Before returning it
  // waits briefly (at most 250 ms) for the output pipes to reach EOF, then closes them, so
  // every line has reached on_line and on_line is not called again. A grandchild that keeps
  // the pipes open does not delay the result beyond that bound (it gets EPIPE later).
  // DeadlineExceeded if the child is still running after `timeout`.
  Result<int> Wait(std::chrono::milliseconds timeout);

  // SIGTERM to the child's process group; SIGKILL to the group once the child exits or
  // `grace` passes, whichever is first (so stragglers in the group die too); reaps; closes
  // the output as Wait does. On an already exited child it only sends SIGKILL to the group.
  void Terminate(std::chrono::milliseconds grace);

  // The last `keep_stderr_lines` stderr lines, oldest first.
  std::vector<std::string> LastStderrLines() const;

  // "running", "exited with code 1", "killed by signal 9 (Killed)", as of the last
  // Poll/Wait/Terminate.
  std::string DescribeExit() const;

 private:
  class Output;  // pipes + reader thread, defined in subprocess.cc

  Subprocess(pid_t pid, int pidfd, std::string name, std::unique_ptr<Output> output);
  // True once the child has been reaped, false if `timeout` passed first.
  bool WaitForExit(std::chrono::milliseconds timeout);
  // Sleeps until the child may have exited or `timeout` passes.
  void BlockUntilExitOrTimeout(std::chrono::nanoseconds timeout);
  void SignalGroup(int signal);

  const pid_t pid_;
  const int pidfd_;          // readable once the child exits; -1 if the kernel lacks pidfd
  const std::string name_;   // argv[0], for messages
  const std::unique_ptr<Output> output_;

  mutable std::mutex mu_;
  // Guarded by mu_.
  std::optional<int> wait_status_;
  bool status_lost_ = false;  // someone else reaped the child (e.g. SIGCHLD set to SIG_IGN)
};

// "exited with code 3", "killed by signal 15 (Terminated)", "killed by signal 11
// (Segmentation fault), core dumped".
std::string DescribeWaitStatus(int wait_status);

// The exit code a shell would report: the exit code, or 128 + signal number.
int ExitCodeOf(int wait_status);

}  // namespace ember::base
