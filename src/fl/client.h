// ClientRuntime: one FL site. It owns the site's cell (connected to the server, listening
// on loopback for its training script), registers, then loops: fetch a task, run it
// through the executor (the script pulls the model from the server and submits its
// result there, both relayed through this cell as they stream). A failure is reported to the server
// (fl.failure) naming site, job, round and cause, then ends the loop.
//
//   EMBER_ASSIGN_OR_RETURN(auto site, ClientRuntime::Start(options));
//   Status s = site->Wait();
//
// Thread-safety: Start/Wait/Abort may be called from any thread; the loop runs on its own
// thread.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cell/cell.h"
#include "fl/executors/launcher.h"
#include "fl/job_config.h"

namespace ember::fl {

struct ClientOptions {
  std::string site;                          // "site-1"
  std::string server_address;                // "host:port"
  JobConfig job;
  std::string workspace;                     // the site's folder
  std::shared_ptr<spdlog::logger> logger;
  // Timeouts and retries (docs/config.md: communication_*, process_terminate_grace,
  // script_min_shutdown_timeout) and the cell's transport. Null: Config::FromEnvironment().
  std::shared_ptr<const base::Config> config;
};

class ClientRuntime {
 public:
  static Result<std::unique_ptr<ClientRuntime>> Start(ClientOptions options);
  ~ClientRuntime();
  // Blocks until the site's loop ends; OK when the job ended normally.
  Status Wait();
  // Ends the site's work now: stops a running script and a pending request to the
  // server; the site reports `reason` to the server and Wait returns it as the failure.
  void Abort(const std::string& reason);

 private:
  explicit ClientRuntime(ClientOptions options) : options_(std::move(options)) {}
  Status Run();
  Result<std::string> Register();
  Status RunTask(const cell::Message& task);
  Result<cell::Message> FetchTask();
  // A request to the server that Abort() cuts short.
  Result<cell::Message> RequestServer(cell::Message request, std::chrono::milliseconds timeout);
  Status AbortedStatus();
  void ReportFailure(const Status& s);

  ClientOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<cell::Cell> cell_;
  std::mutex executor_mu_;                   // guards executor_ creation against Abort()
  std::unique_ptr<LauncherExecutor> executor_;
  std::string job_id_;
  int round_ = -1;
  int gc_rounds_ = 0;
  std::thread thread_;
  Status outcome_;
  std::atomic<bool> aborted_{false};
  std::mutex abort_mu_;
  std::string abort_reason_;                 // guarded by abort_mu_; set once, with aborted_
};

}  // namespace ember::fl
