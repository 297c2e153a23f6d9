#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "base/log.h"
#include "cli/simulate.h"
#include "cli/site.h"

namespace ember::cli {

namespace {

int ExitCodeFor(const Status& s) {
  if (s.ok()) return 0;
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
      return 2;
    default:
      return 1;
  }
}

CLI::App* AddSimulate(CLI::App& app, SimulateOptions& o) {
  auto* sim = app.add_subcommand("simulate", "Run a job folder with a server and N sites, each site its own process");
  sim->add_option("job_dir", o.job_dir, "Job folder (written by recipe.export)")->required();
  sim->add_option("-n,--n-clients", o.num_clients, "Number of sites (site-1 .. site-N)");
  sim->add_option("-c,--clients", o.clients, "Site names, comma separated")->delimiter(',');
  sim->add_option("-t,--threads", o.threads, "Tasks running at once across all sites (default: no limit)");
  sim->add_option("-w,--workspace", o.workspace, "Workspace folder for logs, models and metrics")->required();
  sim->add_option("--log-level", o.log_level, "trace, debug, info, warn, error")->capture_default_str();
  return sim;
}

CLI::App* AddSite(CLI::App& app, SiteOptions& o) {
  auto* site = app.add_subcommand("site", "Run one site of a job, connected to a running server "
                                          "(ember simulate starts one per site)");
  site->add_option("job_dir", o.job_dir, "Job folder (written by recipe.export)")->required();
  site->add_option("--name", o.name, "Site name, e.g. site-1")->required();
  site->add_option("--server", o.server, "The server's HOST:PORT")->required();
  site->add_option("-w,--workspace", o.workspace, "This site's folder (log.txt; the script's working dir)")
      ->required();
  site->add_option("--log-level", o.log_level, "trace, debug, info, warn, error")->capture_default_str();
  return site;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"Ember: a federated learning runtime"};
  app.set_version_flag("--version", std::string("ember ") + EMBER_VERSION);
  app.require_subcommand(1);
  SimulateOptions sim;
  SiteOptions site;
  AddSimulate(app, sim);
  CLI::App* site_cmd = AddSite(app, site);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (site_cmd->parsed()) {
    Status s = RunSite(site);
    if (!s.ok()) std::cerr << "ember site: " << s.ToString() << std::endl;
    return ExitCodeFor(s);
  }
  Status s = RunSimulation(sim);
  if (!s.ok()) {
    std::cerr << "ember simulate: " << s.ToString() << std::endl;
  } else {
    std::cerr << "ember simulate: job finished; results in " << sim.workspace << "/server" << std::endl;
  }
  return ExitCodeFor(s);
}

}  // namespace ember::cli
