// ServerRuntime: the FL server of one job. It owns the "server" cell, registers sites,
// hands out tasks through a TaskBoard and feeds each arriving result to the workflow's
// callback (in-time aggregation). The workflow (FedAvg) runs on its own thread.
//
//   EMBER_ASSIGN_OR_RETURN(auto server, ServerRuntime::Start(options));
//   ... clients connect to server->address() ...
//   Status outcome = server->Wait();   // OK, or the failure naming site, job, round, cause
//
// A site that is disconnected while it owes the current round a result, or whose result
// breaks off midway (its bytes are rolled back out of the sum), is excluded from the
// round; the round ends when every other site answered and the workflow decides whether
// the results it has are enough (FedAvg: min_clients). Later rounds go to the sites
// connected then. A site that reports a failure (fl.failure: its script crashed), or
// whose result is bad, fails the job. A site's process exiting is seen by whoever
// started it, which reports it with SiteLost.
//
// Thread-safety: Start/Wait/Abort may be called from any thread.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
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
  // task_park_timeout, end_run_drain_timeout (docs/config.md) and the cell's transport.
  // Null: Config::FromEnvironment().
  std::shared_ptr<const base::Config> config;
};

// Called when a site's result starts to arrive (its header is known, the safetensors
// body is still streaming): returns the consumer the body streams into. The consumer's
// Finish folds the result in for good; Cancel takes back whatever it folded.
using ResultStarter = std::function<Result<std::unique_ptr<cell::BodyConsumer>>(
    const std::string& site, const cell::Json& h, uint64_t body_size)>;

// Sites left out of a round: site -> why.
using Exclusions = std::map<std::string, std::string>;

// What a workflow may ask of the server (FLARE's WFCommServer, reduced to FedAvg's needs).
class ServerComm {
 public:
  virtual ~ServerComm() = default;
  // Blocks until `n` registered sites are connected or the job is aborted; returns the
  // connected ones.
  virtual Result<std::vector<std::string>> WaitForSites(int n) = 0;
  // Sends `task` (header + body) to `sites`; each result streams into a consumer made by
  // `on_result` (several may stream at once). Returns the sites excluded from the round
  // once every other result was consumed, or the first failure (a site's error, a
  // rejected result, a timeout).
  virtual Result<Exclusions> RunRound(int round, const std::vector<std::string>& sites, const cell::Json& task,
                                      std::shared_ptr<cell::BodySource> body, ResultStarter on_result) = 0;
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
  Result<Exclusions> RunRound(int round, const std::vector<std::string>& sites, const cell::Json& task,
                              std::shared_ptr<cell::BodySource> body, ResultStarter on_result) override;

 private:
  // REQUIRES: options.config is set (Start resolves it).
  explicit ServerRuntime(ServerOptions options);
  void RegisterHandlers();
  void OnRegister(cell::Message m, cell::Responder r);
  void OnGetModel(const cell::Message& m, cell::Responder r);
  Result<std::unique_ptr<cell::BodyConsumer>> OnSubmitHead(const cell::Message& head);
  void OnSubmitDone(cell::Message m, cell::Responder r);
  void OnFailure(cell::Message m);
  void OnPeer(const std::string& peer, bool connected);
  void Fail(Status s);
  // Leaves `site` out of the current round: no-op if it already answered or was left out,
  // or (unless `streaming`, said by its broken result stream) if its result is streaming in.
  void Exclude(const std::string& site, const std::string& why, bool streaming);
  std::vector<std::string> ConnectedSitesLocked() const;
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
  Exclusions excluded_;                    // of the current round
  Status failure_;
  bool done_ = false;
  Status outcome_;
  int round_ = -1;
  ResultStarter on_result_;
};

}  // namespace ember::fl
