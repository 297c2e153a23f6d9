#include "fl/executors/launcher.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/command_line.h"

namespace ember::fl {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr auto kTick = 50ms;

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n    " + l;
  return out;
}

// The Python that ran job.py (EMBER_PYTHON) stands in for a bare "python3" so the script
// sees the same packages; anything else is taken as written.
void ResolveInterpreter(std::vector<std::string>& argv) {
  const char* py = std::getenv("EMBER_PYTHON");
  if (py && *py && !argv.empty() && (argv[0] == "python3" || argv[0] == "python")) argv[0] = py;
}

// Where the ember Python package lives, so `import ember.client` works uninstalled.
std::string EmberPythonPath() {
  if (const char* p = std::getenv("EMBER_PYTHONPATH")) return p;
#ifdef EMBER_SOURCE_PYTHON_DIR
  return EMBER_SOURCE_PYTHON_DIR;
#else
  return "";
#endif
}

}  // namespace

LauncherExecutor::LauncherExecutor(std::shared_ptr<cell::Cell> cell, ClientConfig config, LaunchContext ctx)
    : cell_(std::move(cell)), config_(std::move(config)), ctx_(std::move(ctx)) {
  cell_->Handle("link.get_task", [this](cell::Message, cell::Responder r) { OnGetTask(std::move(r)); });
  cell_->Handle("link.submit", [this](cell::Message m, cell::Responder r) { OnSubmit(std::move(m), r); });
  cell_->Handle("link.log", [this](cell::Message m, cell::Responder) { OnLog(m); });
}

LauncherExecutor::~LauncherExecutor() {
  if (proc_) proc_->Terminate(ctx_.terminate_grace);
}

void LauncherExecutor::OnPeer(const std::string& peer, bool connected) {
  if (peer != script_cell()) return;
  std::lock_guard lock(mu_);
  connected_ = connected;
  cv_.notify_all();
}

void LauncherExecutor::OnGetTask(cell::Responder r) {
  std::lock_guard lock(mu_);
  if (ended_) return r.Reply({{"task_name", "end"}});
  if (task_) {
    r.Reply(*task_);
    task_.reset();
    return;
  }
  waiting_ = std::move(r);
}

void LauncherExecutor::OnSubmit(cell::Message m, cell::Responder r) {
  if (m.body && m.body->size() > 0) {  // an older script: the params go to the server itself
    return r.Error(StatusCode::kInvalidArgument,
                   "link.submit carries no params: send them to the server with fl.submit_result "
                   "(docs/wire-format.md §6)");
  }
  {
    std::lock_guard lock(mu_);
    result_ = std::move(m);
  }
  cv_.notify_all();
  r.Reply();
}

void LauncherExecutor::OnLog(const cell::Message& m) {
  const auto& h = m.h();
  if (h.contains("tag")) {
    ctx_.log->info("[{}] metric {} = {} (step {})", ctx_.site, h.value("tag", ""), h["value"].dump(),
                   h.value("step", cell::Json()).dump());
    std::ofstream out(ctx_.workspace + "/tracking.jsonl", std::ios::app);
    out << h.dump() << "\n";
  } else {
    ctx_.log->info("[{}] {}", ctx_.site, h.value("msg", ""));
  }
}

Status LauncherExecutor::WriteClientConfig(const std::string& path) const {
  cell::Json j = config_.raw;
  j["site_name"] = ctx_.site;
  j["job_id"] = ctx_.job_id;
  std::ofstream out(path);
  out << j.dump(2);
  if (!out) return Status::Internal("cannot write " + path);
  return Status::Ok();
}

Result<std::vector<std::string>> LauncherExecutor::BuildArgv() const {
  EMBER_ASSIGN_OR_RETURN(auto argv, base::SplitCommandLine(config_.command));
  argv.push_back(config_.train_script);
  EMBER_ASSIGN_OR_RETURN(auto args, base::SplitCommandLine(config_.train_args));
  argv.insert(argv.end(), args.begin(), args.end());
  ResolveInterpreter(argv);
  return argv;
}

Status LauncherExecutor::Launch() {
  const std::string cfg_path = ctx_.workspace + "/client_config.json";
  EMBER_RETURN_IF_ERROR(WriteClientConfig(cfg_path));
  base::SpawnOptions o;
  EMBER_ASSIGN_OR_RETURN(o.argv, BuildArgv());
  std::string pypath = fs::path(config_.train_script).parent_path().string();
  if (!EmberPythonPath().empty()) pypath += ":" + EmberPythonPath();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) pypath += std::string(":") + old;
  o.env = {{"EMBER_LINK", cell_->listen_address()}, {"EMBER_LINK_TOKEN", ctx_.link_token},
           {"EMBER_SITE_NAME", ctx_.site},          {"EMBER_JOB_ID", ctx_.job_id},
           {"EMBER_CELL_NAME", script_cell()},      {"EMBER_CLIENT_CONFIG", cfg_path},
           {"PYTHONPATH", pypath}};
  o.cwd = ctx_.workspace;
  auto log = ctx_.log;
  auto site = ctx_.site;
  o.on_line = [log, site](std::string_view line, bool is_stderr) {
    log->info("[{} {}] {}", site, is_stderr ? "stderr" : "stdout", line);
  };
  ctx_.log->info("{}: launching training script: {}", ctx_.site, fmt::join(o.argv, " "));
  auto proc = base::Subprocess::Spawn(std::move(o));
  if (!proc.ok()) return proc.status().WithContext(ctx_.site + ": cannot launch training script");
  proc_ = std::move(proc).value();
  return Status::Ok();
}

Status LauncherExecutor::ScriptFailure(const std::string& what) const {
  auto lines = proc_ ? proc_->LastStderrLines() : std::vector<std::string>{};
  std::string msg = "training script " + what;
  if (!lines.empty()) msg += "; last stderr lines:" + JoinLines(lines);
  return Status::Aborted(msg);
}

Status LauncherExecutor::Prelaunch() {
  if (!config_.launch_once || proc_) return Status::Ok();
  return Launch();
}

Result<cell::Message> LauncherExecutor::Execute(const cell::Message& task) {
  if (!proc_ || proc_->Poll()) {
    if (proc_ && config_.launch_once) return ScriptFailure(proc_->DescribeExit() + " before the job ended");
    EMBER_RETURN_IF_ERROR(Launch());
  }
  const auto started = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  result_.reset();
  ended_ = false;
  if (waiting_) {
    waiting_->Reply(task.h());
    waiting_.reset();
  } else {
    task_ = task.h();
  }
  while (!result_) {
    cv_.wait_for(lock, kTick);
    if (result_) break;
    if (aborted_) {
      proc_->Terminate(ctx_.terminate_grace);
      return Status::Aborted("job aborted while the training script was running");
    }
    if (proc_->Poll()) {
      lock.unlock();
      std::this_thread::sleep_for(kTick);  // a result sent just before exit still counts
      lock.lock();
      if (result_) break;
      return ScriptFailure(proc_->DescribeExit() + " before sending its result");
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!connected_ && task_ && waited > config_.init_timeout) {
      proc_->Terminate(ctx_.terminate_grace);
      return ScriptFailure("did not call init() within " + std::to_string(config_.init_timeout) + " s");
    }
  }
  cell::Message result = std::move(*result_);
  result_.reset();
  lock.unlock();
  if (!config_.launch_once) Finish();
  return result;
}

void LauncherExecutor::Abort() {
  std::lock_guard lock(mu_);
  aborted_ = true;
  cv_.notify_all();
}

void LauncherExecutor::Finish() {
  {
    std::lock_guard lock(mu_);
    ended_ = true;
    if (waiting_) waiting_->Reply({{"task_name", "end"}});
    waiting_.reset();
  }
  if (!proc_) return;
  const auto grace = std::max(ctx_.min_shutdown_timeout,
                              std::chrono::milliseconds(static_cast<int64_t>(config_.shutdown_timeout * 1000)));
  auto exit = proc_->Wait(grace);
  if (!exit.ok()) {
    ctx_.log->warn("{}: training script still running {} ms after the job ended; terminating", ctx_.site,
                   grace.count());
    proc_->Terminate(ctx_.terminate_grace);
  } else {
    ctx_.log->info("{}: training script {}", ctx_.site, proc_->DescribeExit());
  }
  proc_.reset();
}

}  // namespace ember::fl
