// LauncherExecutor: runs the user's training script as a subprocess and serves it over
// the link (docs/client-api.md): the script is a child cell "<site>.<job_id>" of the
// site's cell, asks for tasks with link.get_task, fetches the task's model from the server
// (fl.get_model) and sends its result there (fl.submit_result) through the site's cell,
// which relays both as they stream, then reports with link.submit that it is done.
// A script that crashes, exits early or never calls init() fails the task with its exit
// status and last stderr lines; nothing waits for ever.
//
//   LauncherExecutor exec(cell, config, {.site = "site-1", .job_id = id, ...});
//   EMBER_ASSIGN_OR_RETURN(cell::Message result, exec.Execute(task));
//   exec.Finish();
//
// Thread-safety: Execute/Finish are called by the site's task loop thread; the link
// handlers run on cell worker threads; shared state is guarded by mu_.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/config.h"
#include "base/subprocess.h"
#include "cell/cell.h"
#include "fl/job_config.h"

namespace ember::fl {

struct LaunchContext {
  std::string site;
  std::string job_id;
  std::string workspace;     // the site's folder; the script's working directory
  std::string link_token;    // the token the script presents in HELLO
  std::shared_ptr<spdlog::logger> log;
  // SIGTERM -> SIGKILL grace when the script is terminated (process_terminate_grace).
  std::chrono::milliseconds terminate_grace = base::DefaultOf(base::kProcessTerminateGrace);
  // Least time the script gets to exit after the job ended (script_min_shutdown_timeout);
  // the job's shutdown_timeout may give it more.
  std::chrono::milliseconds min_shutdown_timeout = base::DefaultOf(base::kScriptMinShutdownTimeout);
};

class LauncherExecutor {
 public:
  // Registers the link.* handlers on `cell` (the site's cell, already listening).
  LauncherExecutor(std::shared_ptr<cell::Cell> cell, ClientConfig config, LaunchContext ctx);
  ~LauncherExecutor();

  // With launch_once, starts the script now (e.g. right after registering) so its start-up
  // overlaps the wait for the first task; Execute then finds it running. No-op otherwise.
  Status Prelaunch();
  // Hands `task` (its header) to the script and waits until the script reports that the
  // server accepted its result; returns that report (the result header).
  Result<cell::Message> Execute(const cell::Message& task);
  // Tells the script the job ended and waits (shutdown_timeout, at least
  // ctx.min_shutdown_timeout) for it to exit.
  void Finish();
  // Makes a running Execute return kAborted at once and stops the script.
  void Abort();
  std::string script_cell() const { return ctx_.site + "." + ctx_.job_id; }
  void OnPeer(const std::string& peer, bool connected);

 private:
  Status Launch();
  Status WriteClientConfig(const std::string& path) const;
  Result<std::vector<std::string>> BuildArgv() const;
  Status ScriptFailure(const std::string& what) const;
  void OnGetTask(cell::Responder r);
  void OnSubmit(cell::Message m, cell::Responder r);
  void OnLog(const cell::Message& m);

  std::shared_ptr<cell::Cell> cell_;
  ClientConfig config_;
  LaunchContext ctx_;
  std::unique_ptr<base::Subprocess> proc_;

  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  std::optional<cell::Responder> waiting_;   // the script's parked link.get_task
  std::optional<cell::Json> task_;           // task header not yet handed to the script
  std::optional<cell::Message> result_;
  bool connected_ = false;
  bool ended_ = false;
  bool aborted_ = false;
};

}  // namespace ember::fl
