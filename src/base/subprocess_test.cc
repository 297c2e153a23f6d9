#include "base/subprocess.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

namespace ember::base {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Thread-safe sink for on_line; must outlive the Subprocess feeding it.
class LineLog {
 public:
  std::function<void(std::string_view, bool)> Callback() {
    return [this](std::string_view line, bool is_stderr) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(std::string(line), is_stderr);
      cv_.notify_all();
    };
  }

  std::vector<std::pair<std::string, bool>> lines() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

  // True once a line starting with `prefix` arrived, false after `timeout`.
  bool WaitForPrefix(std::string_view prefix, std::chrono::milliseconds timeout,
                     std::string* line = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      for (const auto& [text, is_stderr] : lines_) {
        if (text.rfind(prefix, 0) == 0) {
          if (line) *line = text;
          return true;
        }
      }
      return false;
    });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, bool>> lines_;
};

std::unique_ptr<Subprocess> MustSpawn(SpawnOptions options) {
  Result<std::unique_ptr<Subprocess>> r = Subprocess::Spawn(std::move(options));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : nullptr;
}

std::string MakeTempDir() {
  std::string pattern = std::filesystem::temp_directory_path() / "ember_subprocess_XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return std::filesystem::canonical(pattern);
}

// A process is gone once /proc has no entry for it or it is a zombie nobody reaps.
bool ProcessIsGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = content.rfind(')');
  return paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] == 'Z';
}

bool WaitUntilGone(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!ProcessIsGone(pid)) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST(Subprocess, CapturesEachStreamsLinesAndTheExitCode) {
  LineLog log;
  auto proc = MustSpawn({.argv = {"sh", "-c", "echo out; echo err >&2; exit 3"},
                         .on_line = log.Callback()});
  ASSERT_NE(proc, nullptr);
  Result<int> status = proc->Wait(5s);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 3);
  EXPECT_EQ(ExitCodeOf(*status), 3);
  EXPECT_EQ(proc->Poll(), *status);
  EXPECT_EQ(proc->DescribeExit(), "exited with code 3");
  EXPECT_EQ(proc->LastStderrLines(), std::vector<std::string>{"err"});
  auto lines = log.lines();
  EXPECT_EQ(lines.size(), 2u);
  EXPECT_NE(std::find(lines.begin(), lines.end(), std::make_pair(std::string("out"), false)),
            lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), std::make_pair(std::string("err"), true)),
            lines.end());
}

TEST(Subprocess, KeepsOnlyTheLastStderrLines) {
  auto proc = MustSpawn({.argv = {"sh", "-c", "for i in 1 2 3 4 5; do echo e$i >&2; done"},
                         .keep_stderr_lines = 2});
  ASSERT_NE(proc, nullptr);
  ASSERT_TRUE(proc->Wait(5s).ok());
  EXPECT_EQ(proc->LastStderrLines(), (std::vector<std::string>{"e4", "e5"}));
}

TEST(Subprocess, SplitsLongLinesFlushesThePartialLastLineAndDropsCarriageReturns) {
  LineLog log;
  auto proc = MustSpawn(
      {.argv = {"sh", "-c", "head -c 70000 /dev/zero | tr '\\0' a; printf '\\ncrlf\\r\\ntail'"},
       .on_line = log.Callback()});
  ASSERT_NE(proc, nullptr);
  ASSERT_TRUE(proc->Wait(5s).ok());
  auto lines = log.lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].first, std::string(64 * 1024, 'a'));
  EXPECT_EQ(lines[1].first, std::string(70000 - 64 * 1024, 'a'));
  EXPECT_EQ(lines[2].first, "crlf");
  EXPECT_EQ(lines[3].first, "tail");
}

TEST(Subprocess, AppliesEnvironmentOverridesAndWorkingDirectory) {
  std::string dir = MakeTempDir();
  setenv("EMBER_TEST_INHERITED", "kept", 1);
  setenv("EMBER_TEST_OVERRIDDEN", "old", 1);
  LineLog log;
  auto proc = MustSpawn(
      {.argv = {"sh", "-c", "echo \"$EMBER_TEST_INHERITED $EMBER_TEST_OVERRIDDEN $EMBER_TEST_NEW\"; pwd"},
       .env = {{"EMBER_TEST_OVERRIDDEN", "new"}, {"EMBER_TEST_NEW", "a b"}},
       .cwd = dir,
       .on_line = log.Callback()});
  ASSERT_NE(proc, nullptr);
  ASSERT_TRUE(proc->Wait(5s).ok());
  auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].first, "kept new a b");
  EXPECT_EQ(lines[1].first, dir);
  std::filesystem::remove(dir);
}

TEST(Subprocess, ReadsStdinFromDevNull) {
  LineLog log;
  auto proc = MustSpawn({.argv = {"sh", "-c", "wc -c"}, .on_line = log.Callback()});
  ASSERT_NE(proc, nullptr);
  ASSERT_TRUE(proc->Wait(5s).ok());
  ASSERT_EQ(log.lines().size(), 1u);
  EXPECT_EQ(log.lines()[0].first, "0");
}

TEST(Subprocess, SpawnFailsClearlyForAProgramNotOnThePath) {
  Result<std::unique_ptr<Subprocess>> r = Subprocess::Spawn({.argv = {"ember-no-such-program"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "cannot execute 'ember-no-such-program': No such file or directory");
}

TEST(Subprocess, SpawnReportsAnExecFailureInsteadOfExiting127) {
  Result<std::unique_ptr<Subprocess>> r = Subprocess::Spawn({.argv = {"/nonexistent/pythonX"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "cannot execute '/nonexistent/pythonX': No such file or directory");

  std::string dir = MakeTempDir();
  std::string script = dir + "/not_executable.sh";
  std::ofstream(script) << "#!/bin/sh\necho hi\n";
  r = Subprocess::Spawn({.argv = {script}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("Permission denied"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Subprocess, SpawnFailsWhenTheWorkingDirectoryDoesNotExist) {
  Result<std::unique_ptr<Subprocess>> r =
      Subprocess::Spawn({.argv = {"true"}, .cwd = "/nonexistent/ember-dir"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("/nonexistent/ember-dir"), std::string::npos);
}

TEST(Subprocess, SpawnRejectsAnEmptyArgv) {
  EXPECT_EQ(Subprocess::Spawn({}).status().code(), StatusCode::kInvalidArgument);
}

TEST(Subprocess, WaitTimesOutWhileTheChildRuns) {
  auto proc = MustSpawn({.argv = {"sleep", "100"}});
  ASSERT_NE(proc, nullptr);
  Result<int> status = proc->Wait(50ms);
  EXPECT_EQ(status.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(proc->Poll().has_value());
  EXPECT_EQ(proc->DescribeExit(), "running");
}  // the destructor terminates the sleeper

TEST(Subprocess, TerminateStopsASleepingChildQuickly) {
  auto proc = MustSpawn({.argv = {"sleep", "100"}});
  ASSERT_NE(proc, nullptr);
  auto start = Clock::now();
  proc->Terminate(2s);
  EXPECT_LT(Clock::now() - start, 1s);
  ASSERT_TRUE(proc->Poll().has_value());
  EXPECT_EQ(proc->DescribeExit(), "killed by signal 15 (Terminated)");
  EXPECT_TRUE(WaitUntilGone(proc->pid(), 1s));
}

TEST(Subprocess, TerminateKillsAChildThatIgnoresSigtermAfterTheGrace) {
  LineLog log;
  auto proc = MustSpawn({.argv = {"sh", "-c", "trap '' TERM; echo ready; sleep 100"},
                         .on_line = log.Callback()});
  ASSERT_NE(proc, nullptr);
  ASSERT_TRUE(log.WaitForPrefix("ready", 2s));
  auto start = Clock::now();
  proc->Terminate(200ms);
  EXPECT_LT(Clock::now() - start, 1500ms);
  EXPECT_EQ(proc->DescribeExit(), "killed by signal 9 (Killed)");
  EXPECT_EQ(ExitCodeOf(*proc->Poll()), 128 + 9);
}

TEST(Subprocess, ReportsExitPromptlyWhileAGrandchildHoldsStdoutOpen) {
  LineLog log;
  auto proc = MustSpawn({.argv = {"sh", "-c", "sleep 30 & echo started; exit 0"},
                         .on_line = log.Callback()});
  ASSERT_NE(proc, nullptr);
  auto start = Clock::now();
  Result<int> status = proc->Wait(5s);
  EXPECT_LT(Clock::now() - start, 1s);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(ExitCodeOf(*status), 0);
  EXPECT_TRUE(log.WaitForPrefix("started", 0ms));
  proc->Terminate(100ms);  // kills the grandchild left in the process group
}

TEST(Subprocess, ChildSurvivesTheThreadThatSpawnedIt) {
  std::unique_ptr<Subprocess> proc;
  std::thread([&] { proc = MustSpawn({.argv = {"sleep", "100"}}); }).join();
  ASSERT_NE(proc, nullptr);
  std::this_thread::sleep_for(200ms);  // PDEATHSIG would have fired by now
  EXPECT_FALSE(proc->Poll().has_value());
}

TEST(Subprocess, DestructorTerminatesARunningChild) {
  pid_t pid;
  {
    auto proc = MustSpawn({.argv = {"sleep", "100"}});
    ASSERT_NE(proc, nullptr);
    pid = proc->pid();
  }
  EXPECT_TRUE(WaitUntilGone(pid, 1s));
}

// The death-test child spawns a sleeper, records its pid and exits without cleaning up;
// the sleeper must die with it (PR_SET_PDEATHSIG).
TEST(SubprocessDeathTest, ChildDiesWithItsParent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-exec: a fresh process for the child
  const char* kEnv = "EMBER_TEST_SLEEPER_PID_FILE";
  if (!getenv(kEnv)) {
    std::string file = testing::TempDir() + "ember_sleeper_" + std::to_string(getpid());
    setenv(kEnv, file.c_str(), 1);
  }
  std::string pid_file = getenv(kEnv);
  EXPECT_EXIT(
      {
        auto proc = Subprocess::Spawn({.argv = {"sleep", "100"}});
        if (!proc.ok()) std::_Exit(1);
        std::ofstream(pid_file) << (*proc)->pid() << "\n";
        (void)(*proc).release();
        std::_Exit(0);
      },
      testing::ExitedWithCode(0), "");
  pid_t sleeper = 0;
  std::ifstream(pid_file) >> sleeper;
  std::remove(pid_file.c_str());
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(WaitUntilGone(sleeper, 2s));
}

TEST(DescribeWaitStatus, NamesTheExitCodeOrTheSignal) {
  EXPECT_EQ(DescribeWaitStatus(1 << 8), "exited with code 1");
  EXPECT_EQ(DescribeWaitStatus(SIGKILL), "killed by signal 9 (Killed)");
  EXPECT_EQ(DescribeWaitStatus(SIGSEGV | 0x80), "killed by signal 11 (Segmentation fault), core dumped");
  EXPECT_EQ(ExitCodeOf(SIGTERM), 143);
}

}  // namespace
}  // namespace ember::base
