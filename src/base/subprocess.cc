#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <system_error>
#include <thread>

#include "base/log.h"

extern char** environ;

namespace ember::base {
namespace {

constexpr size_t kMaxLineBytes = 64 * 1024;
constexpr size_t kReadChunkBytes = 64 * 1024;
// After the child exits, how long Wait/Terminate wait for its pipes to reach EOF.
constexpr std::chrono::milliseconds kOutputDrainBound(250);
// At most this much already-buffered output is read once the reader is told to stop.
constexpr size_t kStopDrainBytes = 1 << 20;
// How long to wait for a SIGKILLed child to disappear before giving up on reaping it.
constexpr std::chrono::milliseconds kKillWait(5000);
constexpr std::chrono::milliseconds kDestructorGrace(2000);

// ---------------------------------------------------------------------------------------
// File descriptors.

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::string ErrnoText(int err) { return std::strerror(err); }  // glibc: thread-safe for errno

Status SystemError(std::string_view what, int err) {
  std::string m = std::string(what) + ": " + ErrnoText(err);
  if (err == EAGAIN || err == EMFILE || err == ENFILE || err == ENOMEM) {
    return Status::ResourceExhausted(std::move(m));
  }
  return Status::Internal(std::move(m));
}

// Moves `fd` above 0..2 so the child's dup2 onto stdio can never clobber another pipe end
// (possible when this process was started with stdio closed). Keeps O_CLOEXEC.
Result<UniqueFd> AboveStdio(int fd) {
  if (fd > 2) return UniqueFd(fd);
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  ::close(fd);
  if (moved < 0) return SystemError("fcntl(F_DUPFD_CLOEXEC)", err);
  return UniqueFd(moved);
}

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return SystemError("pipe2", errno);
  Result<UniqueFd> r = AboveStdio(fds[0]);
  Result<UniqueFd> w = AboveStdio(fds[1]);
  if (!r.ok()) return r.status();
  if (!w.ok()) return w.status();
  return Pipe{std::move(*r), std::move(*w)};
}

// ---------------------------------------------------------------------------------------
// Everything the child needs, prepared before fork: after fork only async-signal-safe
// calls are allowed, so no allocation happens in the child.

struct ChildPlan {
  std::string path;  // resolved program
  std::vector<std::string> argv_storage, env_storage;
  std::vector<char*> argv, envp;  // null-terminated views of the storage, set by ForkAndExec
  std::string cwd;
  UniqueFd stdin_fd;
  Pipe out, err, status;
  pid_t parent_pid = 0;
};

// Written by the child to the status pipe when it fails before or at exec.
struct ChildFailure {
  enum Stage : int { kChdir, kExec, kSetup } stage;
  int err;
};

std::vector<char*> NullTerminated(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::map<std::string, std::string> MergedEnvironment(const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  for (const auto& [k, v] : overrides) env[k] = v;
  return env;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// execvp's search, done in the parent with the child's PATH so that the child only execs.
// Returns the path to exec, or the errno execvp would have reported.
Result<std::string> ResolveProgram(const std::string& program, const std::string& path_var) {
  if (program.find('/') != std::string::npos) return program;
  bool saw_non_executable = false;
  size_t start = 0;
  while (start <= path_var.size()) {
    size_t end = path_var.find(':', start);
    if (end == std::string::npos) end = path_var.size();
    std::string dir = path_var.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (IsExecutableFile(candidate)) return candidate;
    if (access(candidate.c_str(), F_OK) == 0) saw_non_executable = true;
    start = end + 1;
  }
  int err = saw_non_executable ? EACCES : ENOENT;
  return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kFailedPrecondition,
                "cannot execute '" + program + "': " + ErrnoText(err));
}

Result<UniqueFd> OpenDevNull() {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return SystemError("open /dev/null", errno);
  return AboveStdio(fd);
}

Result<ChildPlan> PrepareChild(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return Status::InvalidArgument("cannot spawn a process: argv is empty");
  }
  ChildPlan plan;
  std::map<std::string, std::string> env = MergedEnvironment(options.env);
  auto path_it = env.find("PATH");
  std::string path_var = path_it != env.end() ? path_it->second : "/usr/local/bin:/usr/bin:/bin";
  EMBER_ASSIGN_OR_RETURN(plan.path, ResolveProgram(options.argv[0], path_var));
  plan.argv_storage = options.argv;
  for (const auto& [k, v] : env) plan.env_storage.push_back(k + "=" + v);
  plan.cwd = options.cwd;
  EMBER_ASSIGN_OR_RETURN(plan.stdin_fd, OpenDevNull());
  EMBER_ASSIGN_OR_RETURN(plan.out, MakePipe());
  EMBER_ASSIGN_OR_RETURN(plan.err, MakePipe());
  EMBER_ASSIGN_OR_RETURN(plan.status, MakePipe());
  plan.parent_pid = getpid();
  return plan;
}

// ---------------------------------------------------------------------------------------
// The child side, between fork and exec. Async-signal-safe calls only.

[[noreturn]] void ChildFail(int status_fd, ChildFailure::Stage stage) {
  ChildFailure f{stage, errno};
  ssize_t ignored = write(status_fd, &f, sizeof f);
  (void)ignored;
  _exit(127);
}

void ResetSignals() {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);  // KILL/STOP just fail
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

// dup2 clears O_CLOEXEC on the new fd, except when source == target (then it is a no-op).
bool MoveTo(int fd, int target) {
  if (fd == target) return fcntl(fd, F_SETFD, 0) == 0;
  return dup2(fd, target) == target;
}

[[noreturn]] void RunChild(const ChildPlan& plan) {
  int status_fd = plan.status.write_end.get();
  setpgid(0, 0);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(status_fd, ChildFailure::kSetup);
  if (getppid() != plan.parent_pid) _exit(127);  // the parent died before prctl took effect
  ResetSignals();
  if (!MoveTo(plan.stdin_fd.get(), 0) || !MoveTo(plan.out.write_end.get(), 1) ||
      !MoveTo(plan.err.write_end.get(), 2)) {
    ChildFail(status_fd, ChildFailure::kSetup);
  }
  // Descriptors opened elsewhere in this process without O_CLOEXEC must not leak into the
  // user's program (they would keep sockets and pipes open). Best effort on old kernels.
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (!plan.cwd.empty() && chdir(plan.cwd.c_str()) != 0) ChildFail(status_fd, ChildFailure::kChdir);
  execve(plan.path.c_str(), plan.argv.data(), plan.envp.data());
  ChildFail(status_fd, ChildFailure::kExec);
}

// ---------------------------------------------------------------------------------------
// The parent side.

Status DescribeChildFailure(const ChildFailure& f, const SpawnOptions& options) {
  const std::string& program = options.argv[0];
  std::string cause = ErrnoText(f.err);
  switch (f.stage) {
    case ChildFailure::kChdir:
      return Status::FailedPrecondition("cannot start '" + program + "': cannot enter directory '" +
                                        options.cwd + "': " + cause);
    case ChildFailure::kExec:
      if (f.err == ENOENT) return Status::NotFound("cannot execute '" + program + "': " + cause);
      return Status::FailedPrecondition("cannot execute '" + program + "': " + cause);
    case ChildFailure::kSetup:
      break;
  }
  return Status::Internal("cannot start '" + program + "': child setup failed: " + cause);
}

// Blocks until the child execs (EOF: the CLOEXEC write end closed) or reports a failure.
std::optional<ChildFailure> ReadChildFailure(int status_fd) {
  ChildFailure f;
  ssize_t n;
  do {
    n = read(status_fd, &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f)) return f;
  return std::nullopt;
}

void ReapBlocking(pid_t pid) {
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Forks and execs `plan`. Runs on the spawner thread. Returns the pid once exec succeeded.
Result<pid_t> ForkAndExec(ChildPlan& plan, const SpawnOptions& options) {
  plan.argv = NullTerminated(plan.argv_storage);  // pointers taken after the last move of plan
  plan.envp = NullTerminated(plan.env_storage);
  pid_t pid = fork();
  if (pid < 0) return SystemError("fork", errno);
  if (pid == 0) RunChild(plan);
  plan.status.write_end.reset();
  plan.out.write_end.reset();
  plan.err.write_end.reset();
  plan.stdin_fd.reset();
  std::optional<ChildFailure> failure = ReadChildFailure(plan.status.read_end.get());
  if (!failure) return pid;
  ReapBlocking(pid);
  return DescribeChildFailure(*failure, options);
}

// A thread that lives as long as the process and does every fork. PR_SET_PDEATHSIG fires
// when the thread that forked the child exits, so forking from a caller's short-lived
// thread would kill the child when that thread ends. Intentionally leaked.
class SpawnerThread {
 public:
  static SpawnerThread& Get() {
    static SpawnerThread* instance = new SpawnerThread();
    return *instance;
  }

  void Run(const std::function<void()>& task) {
    std::packaged_task<void()> job(task);
    std::future<void> done = job.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    done.get();
  }

 private:
  SpawnerThread() { std::thread([this] { Loop(); }).detach(); }

  void Loop() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals for the process go elsewhere
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return !jobs_.empty(); });
      std::packaged_task<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> jobs_;  // guarded by mu_
};

// Via syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C". -1 (ENOSYS) on kernels
// before 5.3, where Wait falls back to polling.
int OpenPidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

// ---------------------------------------------------------------------------------------
// Output: owns the stdout/stderr pipes and the thread that reads them.

class Subprocess::Output {
 public:
  using LineCallback = std::function<void(std::string_view, bool)>;

  Output(UniqueFd out, UniqueFd err, LineCallback on_line, size_t keep_stderr_lines)
      : on_line_(std::move(on_line)), keep_stderr_lines_(keep_stderr_lines) {
    streams_[0].fd = std::move(out);
    streams_[1].fd = std::move(err);
    streams_[1].is_stderr = true;
  }

  ~Output() { Finish(std::chrono::milliseconds(0)); }

  Status Start() {
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_.valid()) return SystemError("eventfd", errno);
    for (Stream& s : streams_) fcntl(s.fd.get(), F_SETFL, O_NONBLOCK);
    try {
      thread_ = std::thread([this] { Run(); });
    } catch (const std::system_error& e) {
      return Status::ResourceExhausted(std::string("cannot start output reader thread: ") + e.what());
    }
    return Status::Ok();
  }

  // Waits up to `bound` for both pipes to reach EOF, then stops the reader (it first reads
  // what is already buffered), joins it and closes the pipes. Idempotent.
  void Finish(std::chrono::milliseconds bound) {
    std::lock_guard<std::mutex> finish_lock(finish_mu_);
    if (!thread_.joinable() || thread_.get_id() == std::this_thread::get_id()) return;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, bound, [this] { return done_; });
    }
    uint64_t one = 1;
    ssize_t ignored = write(wake_.get(), &one, sizeof one);
    (void)ignored;
    thread_.join();
    for (Stream& s : streams_) s.fd.reset();
    wake_.reset();
  }

  std::vector<std::string> LastStderrLines() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {last_stderr_.begin(), last_stderr_.end()};
  }

 private:
  struct Stream {
    UniqueFd fd;
    bool is_stderr = false;
    bool open = true;
    std::string partial;  // bytes after the last '\n'
  };
  enum class ReadResult { kData, kAgain, kEof };

  // The reader thread: poll both pipes and the wake eventfd until both pipes hit EOF or
  // Finish asks it to stop.
  void Run() {
    while (streams_[0].open || streams_[1].open) {
      pollfd fds[3] = {{streams_[0].open ? streams_[0].fd.get() : -1, POLLIN, 0},
                       {streams_[1].open ? streams_[1].fd.get() : -1, POLLIN, 0},
                       {wake_.get(), POLLIN, 0}};
      if (poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[2].revents) {
        DrainBuffered();
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].revents && ReadOnce(streams_[i]) == ReadResult::kEof) Close(streams_[i]);
      }
    }
    for (Stream& s : streams_) Close(s);
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  void DrainBuffered() {
    size_t budget = kStopDrainBytes;
    for (Stream& s : streams_) {
      while (s.open && budget > 0) {
        ReadResult r = ReadOnce(s);
        if (r == ReadResult::kEof) Close(s);
        if (r != ReadResult::kData) break;
        budget -= std::min(budget, kReadChunkBytes);
      }
    }
  }

  ReadResult ReadOnce(Stream& s) {
    buffer_.resize(kReadChunkBytes);
    ssize_t n = read(s.fd.get(), buffer_.data(), buffer_.size());
    if (n > 0) {
      Feed(s, std::string_view(buffer_.data(), static_cast<size_t>(n)));
      return ReadResult::kData;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return ReadResult::kAgain;
    return ReadResult::kEof;
  }

  // Splits into lines; a line without '\n' longer than kMaxLineBytes goes out in pieces.
  void Feed(Stream& s, std::string_view data) {
    s.partial.append(data);
    size_t start = 0;
    for (;;) {
      size_t nl = s.partial.find('\n', start);
      size_t end = nl == std::string::npos ? s.partial.size() : nl;
      if (end - start > kMaxLineBytes) {
        Emit(std::string_view(s.partial).substr(start, kMaxLineBytes), s.is_stderr);
        start += kMaxLineBytes;
        continue;
      }
      if (nl == std::string::npos) break;
      Emit(std::string_view(s.partial).substr(start, end - start), s.is_stderr);
      start = nl + 1;
    }
    s.partial.erase(0, start);
  }

  void Close(Stream& s) {
    if (!s.open) return;
    s.open = false;
    if (!s.partial.empty()) Emit(s.partial, s.is_stderr);
    s.partial.clear();
  }

  void Emit(std::string_view line, bool is_stderr) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (is_stderr && keep_stderr_lines_ > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      last_stderr_.emplace_back(line);
      if (last_stderr_.size() > keep_stderr_lines_) last_stderr_.pop_front();
    }
    if (!on_line_) return;
    try {
      on_line_(line, is_stderr);
    } catch (const std::exception& e) {
      EMBER_LOG_ERROR("subprocess output callback threw: {}", e.what());
    } catch (...) {
      EMBER_LOG_ERROR("subprocess output callback threw a non-standard exception");
    }
  }

  const LineCallback on_line_;
  const size_t keep_stderr_lines_;

  // Owned by the reader thread while it runs; by Finish after the join.
  Stream streams_[2];
  std::vector<char> buffer_;
  UniqueFd wake_;  // eventfd: Finish writes to it to stop the reader

  std::mutex finish_mu_;  // serializes Finish
  std::thread thread_;    // guarded by finish_mu_ after Start

  mutable std::mutex mu_;
  // Guarded by mu_.
  bool done_ = false;
  std::deque<std::string> last_stderr_;
  std::condition_variable cv_;
};

// ---------------------------------------------------------------------------------------
// Subprocess.

Result<std::unique_ptr<Subprocess>> Subprocess::Spawn(SpawnOptions options) {
  EMBER_ASSIGN_OR_RETURN(ChildPlan plan, PrepareChild(options));
  Result<pid_t> pid = Status::Internal("spawner thread did not run");
  SpawnerThread::Get().Run([&] { pid = ForkAndExec(plan, options); });
  if (!pid.ok()) return pid.status();
  auto output = std::make_unique<Output>(std::move(plan.out.read_end), std::move(plan.err.read_end),
                                         std::move(options.on_line), options.keep_stderr_lines);
  std::unique_ptr<Subprocess> proc(
      new Subprocess(*pid, OpenPidfd(*pid), options.argv[0], std::move(output)));
  if (Status s = proc->output_->Start(); !s.ok()) return s;  // ~Subprocess kills the child
  return proc;
}

Subprocess::Subprocess(pid_t pid, int pidfd, std::string name, std::unique_ptr<Output> output)
    : pid_(pid), pidfd_(pidfd), name_(std::move(name)), output_(std::move(output)) {}

Subprocess::~Subprocess() {
  if (!Poll()) {
    Terminate(kDestructorGrace);
  } else {
    output_->Finish(kOutputDrainBound);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

std::optional<int> Subprocess::Poll() {
  std::lock_guard<std::mutex> lock(mu_);
  if (wait_status_) return wait_status_;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    wait_status_ = status;
  } else if (r < 0 && errno == ECHILD) {
    EMBER_LOG_WARN("'{}' (pid {}) was reaped by someone else; its exit status is lost", name_, pid_);
    status_lost_ = true;
    wait_status_ = 255 << 8;
  }
  return wait_status_;
}

void Subprocess::BlockUntilExitOrTimeout(std::chrono::nanoseconds timeout) {
  if (pidfd_ < 0) {
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(timeout, std::chrono::milliseconds(5)));
    return;
  }
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  pollfd pfd{pidfd_, POLLIN, 0};
  poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, INT_MAX)));
}

bool Subprocess::WaitForExit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Poll()) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return false;
    BlockUntilExitOrTimeout(left);
  }
  return true;
}

Result<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  if (!WaitForExit(timeout)) {
    return Status::DeadlineExceeded("'" + name_ + "' (pid " + std::to_string(pid_) +
                                    ") still running after " + std::to_string(timeout.count()) +
                                    " ms");
  }
  output_->Finish(kOutputDrainBound);
  return *Poll();
}

void Subprocess::SignalGroup(int signal) {
  if (kill(-pid_, signal) != 0 && errno != ESRCH) {
    EMBER_LOG_WARN("kill(-{}, {}) failed: {}", pid_, signal, ErrnoText(errno));
  }
}

void Subprocess::Terminate(std::chrono::milliseconds grace) {
  if (!Poll()) {
    SignalGroup(SIGTERM);
    WaitForExit(grace);
  }
  SignalGroup(SIGKILL);
  if (!WaitForExit(kKillWait)) {
    EMBER_LOG_ERROR("'{}' (pid {}) survived SIGKILL for {} ms; not reaped", name_, pid_,
                    kKillWait.count());
  }
  output_->Finish(kOutputDrainBound);
}

std::vector<std::string> Subprocess::LastStderrLines() const { return output_->LastStderrLines(); }

std::string Subprocess::DescribeExit() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!wait_status_) return "running";
  if (status_lost_) return "exited (status unknown: reaped elsewhere)";
  return DescribeWaitStatus(*wait_status_);
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    const char* name = sigdescr_np(sig);
    std::string s = "killed by signal " + std::to_string(sig) + " (" + (name ? name : "unknown") + ")";
    if (WCOREDUMP(wait_status)) s += ", core dumped";
    return s;
  }
  return "stopped or unknown (wait status " + std::to_string(wait_status) + ")";
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

}  // namespace ember::base
