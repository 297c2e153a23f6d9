#include "cli/simulate.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <set>

#include "base/config.h"
#include "base/log.h"
#include "cli/site.h"
#include "cli/site_processes.h"
#include "cli/termination_signals.h"
#include "fl/server.h"

namespace ember::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kWatchInterval = 100ms;

std::string NewJobId() {
  std::random_device rd;
  std::mt19937_64 gen((uint64_t(rd()) << 32) | rd());
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(gen()));
  return std::string(buf, 8) + "-" + std::string(buf + 8, 8);
}

Result<std::vector<std::string>> SiteNames(const SimulateOptions& o) {
  std::vector<std::string> sites = o.clients;
  if (sites.empty()) {
    for (int i = 1; i <= o.num_clients; ++i) sites.push_back("site-" + std::to_string(i));
  } else if (o.num_clients > 0 && o.num_clients != static_cast<int>(sites.size())) {
    return Status::InvalidArgument("-n " + std::to_string(o.num_clients) + " does not match the " +
                                   std::to_string(sites.size()) + " names given with -c");
  }
  if (sites.empty()) return Status::InvalidArgument("no sites: give -n N or -c site-a,site-b");
  for (const auto& s : sites) EMBER_RETURN_IF_ERROR(CheckSiteName(s));
  if (std::set<std::string>(sites.begin(), sites.end()).size() != sites.size()) {
    return Status::InvalidArgument("a site name is given twice in -c");
  }
  return sites;
}

Status PrepareWorkspace(const std::string& ws, const std::vector<std::string>& sites) {
  std::error_code ec;
  for (const auto& dir : sites) fs::create_directories(fs::path(ws) / dir, ec);
  fs::create_directories(fs::path(ws) / "server", ec);
  if (ec) return Status::Internal("cannot create workspace " + ws + ": " + ec.message());
  // Outputs of an earlier run in the same workspace would mix with this one's.
  for (const char* f : {"metrics.jsonl", "result.json"}) fs::remove(fs::path(ws) / "server" / f, ec);
  for (const auto& s : sites) fs::remove(fs::path(ws) / s / "tracking.jsonl", ec);
  return Status::Ok();
}

// How long the sites get to exit after the job ended: the script's shutdown_timeout (at
// least script_min_shutdown_timeout, as the launcher gives) plus site_exit_margin for the
// site itself.
std::chrono::milliseconds SiteExitBound(const fl::JobConfig& job, const std::vector<std::string>& sites,
                                        const base::Config& config) {
  std::chrono::milliseconds script = config.Get(base::kScriptMinShutdownTimeout);
  for (const auto& site : sites) {
    if (auto c = job.ClientConfigFor(site); c.ok()) {
      script = std::max(script, std::chrono::milliseconds(static_cast<int64_t>(c->shutdown_timeout * 1000)));
    }
  }
  return script + config.Get(base::kSiteExitMargin);
}

// Until the job ends: a site process that dies fails the job, naming the site. A site
// that failed normally has already told the server (fl.failure), and that cause wins;
// the exit status is the fallback for one that could not (killed, crashed).
Status WatchSites(fl::ServerRuntime& server, SiteProcesses& procs) {
  while (!server.WaitFor(kWatchInterval)) {
    for (const auto& exit : procs.TakeFailures()) server.SiteLost(exit.site, exit.cause);
  }
  return server.Wait();
}

}  // namespace

Status RunSimulation(const SimulateOptions& o) {
  TerminationSignals signals;
  log::SetLevel(o.log_level);
  EMBER_ASSIGN_OR_RETURN(fl::JobConfig job, fl::LoadJobConfig(o.job_dir));
  EMBER_ASSIGN_OR_RETURN(std::vector<std::string> sites, SiteNames(o));
  if (static_cast<int>(sites.size()) < job.server.min_clients) {
    return Status::InvalidArgument("job needs min_clients=" + std::to_string(job.server.min_clients) +
                                   " but only " + std::to_string(sites.size()) + " site(s) are simulated");
  }
  if (o.threads < 0) return Status::InvalidArgument("-t must be 0 (no limit) or more");
  for (const auto& s : sites) EMBER_RETURN_IF_ERROR(job.ClientConfigFor(s).status());
  if (o.workspace.empty()) return Status::InvalidArgument("a workspace is required (-w)");
  const std::string ws = fs::absolute(o.workspace).string();
  EMBER_RETURN_IF_ERROR(PrepareWorkspace(ws, sites));

  EMBER_ASSIGN_OR_RETURN(std::shared_ptr<const base::Config> config, base::ConfigOrEnvironment(nullptr));
  const std::string job_id = NewJobId();
  fl::ServerOptions so{job, job_id, ws + "/server", "127.0.0.1:0",
                       log::MakeSiteLogger("server", ws + "/server/log.txt"), o.threads, config};
  EMBER_ASSIGN_OR_RETURN(auto started, fl::ServerRuntime::Start(std::move(so)));
  // Shared with the signal handler, which may still run while this function returns.
  std::shared_ptr<fl::ServerRuntime> server = std::move(started);
  signals.OnSignal([server](int sig) { server->Abort("simulation interrupted by " + SignalName(sig)); });
  const std::string context = "job " + job.name + " (" + job_id + ")";

  auto procs = SiteProcesses::Start(
      {job.dir, server->address(), ws, o.log_level, config->Get(base::kProcessTerminateGrace)}, sites);
  if (!procs.ok()) {
    server->Abort(procs.status().message());
    return server->Wait().WithContext(context);
  }
  Status outcome = WatchSites(*server, **procs);
  if (!outcome.ok()) {
    (*procs)->TerminateAll();
  } else {
    outcome = (*procs)->WaitAll(SiteExitBound(job, sites, *config));
  }
  return outcome.WithContext(context);
}

}  // namespace ember::cli
