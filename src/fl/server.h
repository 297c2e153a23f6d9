// ServerRuntime: the FL server of one job. It owns the "server" cell, registers sites,
// hands out tasks through a TaskBoard and feeds each arriving result to the workflow's
// callback (in-time aggregation). The workflow (FedAvg) runs on its own thread.
//
//   EMBER_ASSIGN_OR_RETURN(auto server, ServerRuntime::Start(options));
//   ... clients connect to server->address() ...
//   Status outcome = server->Wait();   // OK, or the failure naming site, job, round, cause
//
// A registered site that is disconnected while it owes the current round a result fails
// the job at once (also when it dropped out between rounds). A site's process exiting is
// seen by whoever started it, which reports it with SiteLost.
//
// Thread-safety: Start/Wait/Abort may be called from any thread.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cell/cell.h"
#include "fl/job_config.h"
#include "fl/task_board.h"

namespace ember::fl {

struct ServerOptions {
  JobConfig job;
  std::string job_id;
  std::string workspace;                 // the server's folder, e.g. WS/server
  std::string listen = "127.0.0.1:0";
  std::shared_ptr<spdlog::logger> logger;
  int max_running_tasks = 0;             // tasks out at once across all sites; 0 = no limit
};

// One site's result as the workflow sees it.
struct SiteResult {
  std::string site;
  cell::Message message;                 // h: the result header; body: safetensors
};

// What a workflow may ask of the server (FLARE's WFCommServer, reduced to FedAvg's needs).
class ServerComm {
 public:
  virtual ~ServerComm() = default;
  // Blocks until `n` sites have registered or the job is aborted.
  virtual Result<std::vector<std::string>> WaitForSites(int n) = 0;
  // Sends `task` (header + body) to `sites` and calls `on_result` for each result as it
  // arrives (serialized: never two at once). Returns when every site answered, or the
  // first failure (a site's error, a disconnect, a rejected result, a timeout).
  virtual Status RunRound(int round, const std::vector<std::string>& sites, const cell::Json& task,
                          std::shared_ptr<cell::BodySource> body,
                          std::function<Status(const SiteResult&)> on_result) = 0;
};

class ServerRuntime : public ServerComm {
 public:
  static Result<std::unique_ptr<ServerRuntime>> Start(ServerOptions options);
  ~ServerRuntime() override;

  std::string address() const { return cell_->listen_address(); }
  // Blocks until the workflow ends. Returns its outcome.
  Status Wait();
  // True once the workflow has ended (Wait then returns at once), false after `timeout`.
  bool WaitFor(std::chrono::milliseconds timeout);
  void Abort(const std::string& reason);
  // Fails the job because `site` is gone (e.g. its process died): "<site> job <id> round
  // <r>: <cause>". Ignored once the workflow has ended.
  void SiteLost(const std::string& site, const std::string& cause);

  Result<std::vector<std::string>> WaitForSites(int n) override;
  Status RunRound(int round, const std::vector<std::string>& sites, const cell::Json& task,
                  std::shared_ptr<cell::BodySource> body,
                  std::function<Status(const SiteResult&)> on_result) override;

 private:
  explicit ServerRuntime(ServerOptions options);
  void RegisterHandlers();
  void OnRegister(cell::Message m, cell::Responder r);
  void OnSubmit(cell::Message m, cell::Responder r);
  void OnFailure(cell::Message m);
  void OnPeer(const std::string& peer, bool connected);
  void Fail(Status s);
  Status failure() const;
  void RunWorkflow();
  void DrainEnd();

  ServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<cell::Cell> cell_;
  TaskBoard board_;
  std::thread workflow_thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  std::set<std::string> sites_;            // registered
  std::set<std::string> disconnected_;     // registered, connection currently down
  Status failure_;
  bool done_ = false;
  Status outcome_;
  int round_ = -1;
  std::function<Status(const SiteResult&)> on_result_;

  std::mutex aggregate_mu_;                // serializes on_result_ calls
};

}  // namespace ember::fl
