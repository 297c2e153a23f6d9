#include "cli/simulate.h"

#include <filesystem>
#include <random>
#include <semaphore>

#include "base/log.h"
#include "fl/client.h"
#include "fl/server.h"

namespace ember::cli {

namespace fs = std::filesystem;

namespace {

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
  for (const auto& s : sites) {
    if (s.empty() || s == "server" || s.find_first_not_of(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos) {
      return Status::InvalidArgument("bad site name '" + s + "' (letters, digits, '_' and '-'; not 'server')");
    }
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

}  // namespace

Status RunSimulation(const SimulateOptions& o) {
  log::SetLevel(o.log_level);
  EMBER_ASSIGN_OR_RETURN(fl::JobConfig job, fl::LoadJobConfig(o.job_dir));
  EMBER_ASSIGN_OR_RETURN(std::vector<std::string> sites, SiteNames(o));
  if (static_cast<int>(sites.size()) < job.server.min_clients) {
    return Status::InvalidArgument("job needs min_clients=" + std::to_string(job.server.min_clients) +
                                   " but only " + std::to_string(sites.size()) + " site(s) are simulated");
  }
  for (const auto& s : sites) EMBER_RETURN_IF_ERROR(job.ClientConfigFor(s).status());
  if (o.workspace.empty()) return Status::InvalidArgument("a workspace is required (-w)");
  const std::string ws = fs::absolute(o.workspace).string();
  EMBER_RETURN_IF_ERROR(PrepareWorkspace(ws, sites));

  const std::string job_id = NewJobId();
  fl::ServerOptions so{job, job_id, ws + "/server", "127.0.0.1:0",
                       log::MakeSiteLogger("server", ws + "/server/log.txt")};
  EMBER_ASSIGN_OR_RETURN(auto server, fl::ServerRuntime::Start(std::move(so)));

  std::counting_semaphore<> slots(o.threads > 0 ? o.threads : static_cast<int>(sites.size()));
  std::vector<std::unique_ptr<fl::ClientRuntime>> clients;
  for (const auto& site : sites) {
    fl::ClientOptions co{site, server->address(), job, ws + "/" + site,
                         log::MakeSiteLogger(site, ws + "/" + site + "/log.txt"), &slots};
    auto c = fl::ClientRuntime::Start(std::move(co));
    if (!c.ok()) {
      server->Abort(c.status().message());
      break;
    }
    clients.push_back(std::move(c).value());
  }
  Status outcome = server->Wait();
  if (!outcome.ok()) {
    for (auto& c : clients) c->Abort();
  }
  for (auto& c : clients) {
    Status s = c->Wait();
    if (outcome.ok() && !s.ok()) outcome = s;
  }
  return outcome.WithContext("job " + job.name + " (" + job_id + ")");
}

}  // namespace ember::cli
