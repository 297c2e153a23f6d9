#include "cli/site_processes.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <thread>

namespace ember::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Copies a child's lines to our stdout / stderr verbatim. Console sinks share spdlog's
// console mutex with our own loggers, so lines from the server and the sites never mix.
class ConsoleCopy {
 public:
  static ConsoleCopy& Get() {
    static ConsoleCopy copy;
    return copy;
  }
  void Line(std::string_view line, bool is_stderr) {
    (is_stderr ? err_ : out_)->info("{}", line);
  }

 private:
  ConsoleCopy() : out_(Make<spdlog::sinks::stdout_color_sink_mt>("sites-stdout")),
                  err_(Make<spdlog::sinks::stderr_color_sink_mt>("sites-stderr")) {}
  template <typename Sink>
  static std::shared_ptr<spdlog::logger> Make(const std::string& name) {
    auto sink = std::make_shared<Sink>();
    auto logger = std::make_shared<spdlog::logger>(name, sink);
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);  // the site already filtered by --log-level
    return logger;
  }
  std::shared_ptr<spdlog::logger> out_;
  std::shared_ptr<spdlog::logger> err_;
};

}  // namespace

Result<std::unique_ptr<SiteProcesses>> SiteProcesses::Start(SiteProcessOptions options,
                                                            const std::vector<std::string>& sites) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Status::Internal("cannot find this program (/proc/self/exe): " + ec.message());
  std::unique_ptr<SiteProcesses> procs(new SiteProcesses(std::move(options)));
  for (const auto& site : sites) {
    Status s = procs->Spawn(site, self.string());
    if (!s.ok()) {
      procs->TerminateAll();
      return s;
    }
  }
  return procs;
}

SiteProcesses::~SiteProcesses() { TerminateAll(); }

Status SiteProcesses::Spawn(const std::string& site, const std::string& binary) {
  base::SpawnOptions o;
  o.argv = {binary, "site", options_.job_dir, "--name", site, "--server", options_.server,
            "-w", options_.workspace + "/" + site, "--log-level", options_.log_level};
  o.on_line = [](std::string_view line, bool is_stderr) { ConsoleCopy::Get().Line(line, is_stderr); };
  o.keep_stderr_lines = 5;
  auto proc = base::Subprocess::Spawn(std::move(o));
  if (!proc.ok()) return proc.status().WithContext(site + ": cannot start the site process");
  sites_.push_back({site, std::move(proc).value()});
  return Status::Ok();
}

// "site process exited with code 1: <the site's own error line>" or "site process killed
// by signal 9 (Killed)".
std::string SiteProcesses::Cause(base::Subprocess& proc) {
  std::string cause = "site process " + proc.DescribeExit();
  static constexpr std::string_view kErrorPrefix = "ember site: ";  // cli.cc's last line on failure
  for (const auto& line : proc.LastStderrLines()) {
    if (line.starts_with(kErrorPrefix)) cause += ": " + line.substr(kErrorPrefix.size());
  }
  return cause;
}

std::vector<SiteExit> SiteProcesses::TakeFailures() {
  std::vector<SiteExit> out;
  for (auto& s : sites_) {
    if (s.reported) continue;
    std::optional<int> status = s.proc->Poll();
    if (!status) continue;
    s.reported = true;
    (void)s.proc->Wait(0ms);  // collects the last output lines (bounded)
    if (base::ExitCodeOf(*status) != 0) out.push_back({s.name, Cause(*s.proc)});
  }
  return out;
}

void SiteProcesses::TerminateAll() {
  const std::chrono::milliseconds grace = options_.terminate_grace;
  std::vector<std::thread> stoppers;
  for (auto& s : sites_) {
    if (s.proc->Poll()) continue;
    stoppers.emplace_back([p = s.proc.get(), grace] { p->Terminate(grace); });
  }
  for (auto& t : stoppers) t.join();
}

Status SiteProcesses::WaitAll(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status first;
  for (auto& s : sites_) {
    const auto left = deadline - std::chrono::steady_clock::now();
    auto status = s.proc->Wait(std::max(std::chrono::duration_cast<std::chrono::milliseconds>(left), 0ms));
    if (!status.ok()) {
      s.proc->Terminate(options_.terminate_grace);
      if (first.ok()) first = Status::DeadlineExceeded(s.name + ": site process still running " +
                                                       std::to_string(timeout.count() / 1000) +
                                                       " s after the job ended; terminated");
    } else if (base::ExitCodeOf(*status) != 0 && first.ok()) {
      first = Status::Aborted(s.name + ": " + Cause(*s.proc));
    }
  }
  return first;
}

}  // namespace ember::cli
