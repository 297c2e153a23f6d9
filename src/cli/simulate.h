// `ember simulate`: runs a job folder with a server and N sites in this process, over
// real loopback sockets, each site launching its training script as a subprocess.
//
//   SimulateOptions o{.job_dir = "jobs/hello-numpy", .num_clients = 2, .workspace = "/tmp/ws"};
//   Status s = RunSimulation(o);   // the job's outcome
//
// Thread-safety: call from one thread.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace ember::cli {

struct SimulateOptions {
  std::string job_dir;
  int num_clients = 0;                 // 0: taken from `clients`
  std::vector<std::string> clients;    // empty: site-1 .. site-N
  int threads = 0;                     // concurrently running tasks; 0 = one per site
  std::string workspace;
  std::string log_level = "info";
};

Status RunSimulation(const SimulateOptions& options);

}  // namespace ember::cli
