// SiteProcesses: the `ember site` child processes of one `ember simulate` run, one per
// site. Their stdout/stderr lines are copied to ours; each writes its own
// WS/<site>/log.txt. Every child dies with us (base::Subprocess: PR_SET_PDEATHSIG).
//
//   EMBER_ASSIGN_OR_RETURN(auto procs, SiteProcesses::Start(
//       {.job_dir = job.dir, .server = server->address(), .workspace = ws}, {"site-1", "site-2"}));
//   for (auto& exit : procs->TakeFailures()) server->SiteLost(exit.site, exit.cause);
//   procs->TerminateAll();
//
// Thread-safety: call from one thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/status.h"
#include "base/subprocess.h"

namespace ember::cli {

struct SiteProcessOptions {
  std::string job_dir;
  std::string server;        // the server cell's "host:port"
  std::string workspace;     // the simulation workspace; each site gets <workspace>/<site>
  std::string log_level = "info";
  // SIGTERM -> SIGKILL grace when a site is terminated (process_terminate_grace).
  std::chrono::milliseconds terminate_grace = base::DefaultOf(base::kProcessTerminateGrace);
};

// A site process that exited with an error or was killed.
struct SiteExit {
  std::string site;
  std::string cause;         // "site process killed by signal 9 (Killed)", "... exited with code 1: <error>"
};

class SiteProcesses {
 public:
  // Starts one `ember site` per name, running this very binary (/proc/self/exe). On a
  // spawn failure the processes already started are terminated.
  static Result<std::unique_ptr<SiteProcesses>> Start(SiteProcessOptions options,
                                                      const std::vector<std::string>& sites);
  ~SiteProcesses();

  // Sites whose process has exited with a non-zero status or by a signal since the last
  // call. Non-blocking, except that a newly exited process gets up to 250 ms for its
  // last output lines.
  std::vector<SiteExit> TakeFailures();
  // SIGTERM to every running site, SIGKILL to those still running
  // options.terminate_grace later. The sites are stopped in parallel.
  void TerminateAll();
  // Waits up to `timeout` for every site to exit on its own, then terminates the rest.
  // OK if every site exited with code 0; else the first failure, naming its site.
  Status WaitAll(std::chrono::milliseconds timeout);

 private:
  struct Site {
    std::string name;
    std::unique_ptr<base::Subprocess> proc;
    bool reported = false;    // returned by TakeFailures already
  };
  explicit SiteProcesses(SiteProcessOptions options) : options_(std::move(options)) {}
  Status Spawn(const std::string& site, const std::string& binary);
  static std::string Cause(base::Subprocess& proc);

  SiteProcessOptions options_;
  std::vector<Site> sites_;
};

}  // namespace ember::cli
