// `ember site`: runs one FL site of a job as its own process: connects to the server,
// registers, runs the job's tasks through the launcher executor (which starts the
// training script) and returns when the server says the job ended. `ember simulate`
// starts one of these per site; it can also be started by hand against a running server.
//
//   SiteOptions o{.job_dir = "jobs/hello", .name = "site-1", .server = "127.0.0.1:8002",
//                 .workspace = "/tmp/ws/site-1"};
//   Status s = RunSite(o);   // OK: the job ended normally; else the failure, also sent to the server
//
// The site writes its log to <workspace>/log.txt and to stderr. SIGTERM or SIGINT aborts
// it: the running script is stopped and the server is told the site was terminated.
// Thread-safety: call from one thread, before any other thread is started (see
// termination_signals.h).
#pragma once

#include <string>

#include "base/status.h"

namespace ember::cli {

struct SiteOptions {
  std::string job_dir;
  std::string name;                    // "site-1"
  std::string server;                  // "host:port" of the server cell
  std::string workspace;               // this site's folder
  std::string log_level = "info";
};

Status RunSite(const SiteOptions& options);

// OK if `name` can name a site: letters, digits, '_' and '-', and not "server".
Status CheckSiteName(const std::string& name);

}  // namespace ember::cli
