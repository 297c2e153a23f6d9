// `ember simulate`: runs a job folder on this machine, FLARE-simulator style: the server
// runs in this process, each site is its own `ember site` process (site.h) connected over
// loopback TCP, and each site launches its training script as a subprocess. A site
// process that dies fails the job at once, naming the site; when the job fails the other
// sites are terminated (SIGTERM, SIGKILL 2 s later). SIGINT / SIGTERM abort the job.
//
//   SimulateOptions o{.job_dir = "jobs/hello-numpy", .num_clients = 2, .workspace = "/tmp/ws"};
//   Status s = RunSimulation(o);   // the job's outcome
//
// Thread-safety: call from one thread, before any other thread is started (see
// termination_signals.h).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace ember::cli {

struct SimulateOptions {
  std::string job_dir;
  int num_clients = 0;                 // 0: taken from `clients`
  std::vector<std::string> clients;    // empty: site-1 .. site-N
  int threads = 0;                     // tasks out at once across all sites (server-side); 0 = no limit
  std::string workspace;
  std::string log_level = "info";
};

Status RunSimulation(const SimulateOptions& options);

}  // namespace ember::cli
