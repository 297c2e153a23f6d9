#include "cli/site.h"

#include <filesystem>

#include "base/log.h"
#include "cli/termination_signals.h"
#include "fl/client.h"

namespace ember::cli {

namespace fs = std::filesystem;

Status CheckSiteName(const std::string& name) {
  if (name.empty() || name == "server" ||
      name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") !=
          std::string::npos) {
    return Status::InvalidArgument("bad site name '" + name + "' (letters, digits, '_' and '-'; not 'server')");
  }
  return Status::Ok();
}

Status RunSite(const SiteOptions& o) {
  TerminationSignals signals;
  log::SetLevel(o.log_level);
  EMBER_RETURN_IF_ERROR(CheckSiteName(o.name));
  if (o.server.empty()) return Status::InvalidArgument("the server address is required (--server HOST:PORT)");
  if (o.workspace.empty()) return Status::InvalidArgument("a workspace is required (-w)");
  EMBER_ASSIGN_OR_RETURN(fl::JobConfig job, fl::LoadJobConfig(o.job_dir));
  EMBER_RETURN_IF_ERROR(job.ClientConfigFor(o.name).status());
  const std::string ws = fs::absolute(o.workspace).string();
  std::error_code ec;
  fs::create_directories(ws, ec);
  if (ec) return Status::Internal("cannot create workspace " + ws + ": " + ec.message());

  auto logger = log::MakeSiteLogger(o.name, ws + "/log.txt");
  logger->flush_on(spdlog::level::warn);  // a failure reaches the file even if we are killed next
  spdlog::set_default_logger(logger);     // the cell's own lines go to the site's log too

  auto started = fl::ClientRuntime::Start({o.name, o.server, std::move(job), ws, logger, /*config=*/nullptr});
  // A failure from here on is the job's, whatever its code: exit 1, not a usage error.
  if (!started.ok()) return Status::Aborted(started.status().message());
  // Shared with the handler, which may still run while this function returns.
  std::shared_ptr<fl::ClientRuntime> site = std::move(started).value();
  signals.OnSignal([site, name = o.name, logger](int sig) {
    logger->warn("{}: received {}: aborting", name, SignalName(sig));
    site->Abort("site terminated by " + SignalName(sig));
  });
  Status s = site->Wait();
  if (s.ok()) return s;
  return Status::Aborted(s.message());
}

}  // namespace ember::cli
