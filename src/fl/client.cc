#include "fl/client.h"

#include <optional>
#include <random>

#include "base/memory.h"

namespace ember::fl {

using namespace std::chrono_literals;

namespace {

constexpr auto kAbortPoll = 100ms;

std::string RandomToken() {
  std::random_device rd;
  std::string t;
  for (int i = 0; i < 4; ++i) t += std::to_string(rd());
  return t;
}

}  // namespace

Result<std::unique_ptr<ClientRuntime>> ClientRuntime::Start(ClientOptions options) {
  EMBER_ASSIGN_OR_RETURN(options.config, base::ConfigOrEnvironment(std::move(options.config)));
  std::unique_ptr<ClientRuntime> c(new ClientRuntime(std::move(options)));
  c->log_ = c->options_.logger ? c->options_.logger : spdlog::default_logger();
  cell::CellOptions co;
  co.name = c->options_.site;
  co.parent = c->options_.server_address;
  co.listen = "127.0.0.1:0";
  co.token = RandomToken();
  co.config = c->options_.config;
  auto cell = cell::Cell::Start(co);
  if (!cell.ok()) return cell.status().WithContext(c->options_.site + ": cannot connect to the server");
  c->cell_ = *cell;
  c->thread_ = std::thread([raw = c.get(), token = co.token] {
    raw->outcome_ = [&]() -> Status {
      EMBER_ASSIGN_OR_RETURN(raw->job_id_, raw->Register());
      EMBER_ASSIGN_OR_RETURN(ClientConfig config, raw->options_.job.ClientConfigFor(raw->options_.site));
      raw->gc_rounds_ = config.client_memory_gc_rounds;
      LaunchContext ctx{raw->options_.site, raw->job_id_, raw->options_.workspace, token, raw->log_};
      ctx.terminate_grace = raw->options_.config->Get(base::kProcessTerminateGrace);
      ctx.min_shutdown_timeout = raw->options_.config->Get(base::kScriptMinShutdownTimeout);
      {
        std::lock_guard lock(raw->executor_mu_);
        raw->executor_ = std::make_unique<LauncherExecutor>(raw->cell_, std::move(config), ctx);
        if (raw->aborted_) raw->executor_->Abort();
      }
      raw->cell_->OnPeer([ex = raw->executor_.get()](const std::string& p, bool up) { ex->OnPeer(p, up); });
      EMBER_RETURN_IF_ERROR(raw->executor_->Prelaunch());
      return raw->Run();
    }();
    if (!raw->outcome_.ok()) raw->ReportFailure(raw->outcome_);
  });
  return c;
}

ClientRuntime::~ClientRuntime() {
  if (thread_.joinable()) thread_.join();
  if (cell_) cell_->Stop();  // first: the link handlers point into the executor
  executor_.reset();
}

void ClientRuntime::Abort(const std::string& reason) {
  {
    std::lock_guard lock(abort_mu_);
    if (aborted_) return;
    abort_reason_ = reason;
    aborted_ = true;
  }
  std::lock_guard lock(executor_mu_);
  if (executor_) executor_->Abort();
}

Status ClientRuntime::AbortedStatus() {
  std::lock_guard lock(abort_mu_);
  return Status::Aborted(abort_reason_);
}

Result<cell::Message> ClientRuntime::RequestServer(cell::Message request, std::chrono::milliseconds timeout) {
  // Owned jointly with the completion, which may run after we stopped waiting (or after
  // this runtime is gone), so it touches nothing else.
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<cell::Message>> reply;
  };
  auto pending = std::make_shared<Pending>();
  cell_->RequestAsync("server", std::move(request), timeout, [pending](Result<cell::Message> r) {
    {
      std::lock_guard lock(pending->mu);
      pending->reply = std::move(r);
    }
    pending->cv.notify_all();
  });
  std::unique_lock lock(pending->mu);
  while (!pending->reply) {
    if (aborted_) return AbortedStatus();
    pending->cv.wait_for(lock, kAbortPoll);
  }
  return std::move(*pending->reply);
}

Status ClientRuntime::Wait() {
  if (thread_.joinable()) thread_.join();
  return outcome_;
}

Result<std::string> ClientRuntime::Register() {
  Status last;
  for (int i = 0; i < options_.config->Get(base::kCommunicationMaxAttempts) && !aborted_; ++i) {
    auto reply = RequestServer(cell::Message::Make("fl.register", {{"site", options_.site}}),
                               options_.config->Get(base::kCommunicationTimeout));
    if (reply.ok()) {
      log_->info("{}: registered for job {}", options_.site, reply->h().value("job_id", ""));
      return reply->h().value("job_id", std::string());
    }
    last = reply.status();
    if (!last.IsRetryable()) break;
    std::this_thread::sleep_for(options_.config->Get(base::kCommunicationRetryInterval));
  }
  if (aborted_) return AbortedStatus();
  return last.WithContext(options_.site + ": registration failed");
}

Result<cell::Message> ClientRuntime::FetchTask() {
  Status last;
  for (int i = 0; i < options_.config->Get(base::kCommunicationMaxAttempts) && !aborted_; ++i) {
    auto reply = RequestServer(cell::Message::Make("fl.get_task", {{"site", options_.site}}),
                               options_.config->Get(base::kCommunicationTimeout));
    if (reply.ok()) return reply;
    last = reply.status();
    if (!last.IsRetryable()) break;
    log_->warn("{}: get_task failed ({}), retrying", options_.site, last.ToString());
    std::this_thread::sleep_for(options_.config->Get(base::kCommunicationRetryInterval));
  }
  if (aborted_) return AbortedStatus();
  return last;
}

Status ClientRuntime::Run() {
  while (!aborted_) {
    EMBER_ASSIGN_OR_RETURN(cell::Message task, FetchTask());
    const std::string name = task.h().value("task_name", "");
    if (name == "end") break;
    if (name == "wait") {
      std::this_thread::sleep_for(std::chrono::duration<double>(task.h().value("wait_s", 0.0)));
      continue;
    }
    EMBER_RETURN_IF_ERROR(RunTask(task));
  }
  if (aborted_) return AbortedStatus();
  executor_->Finish();
  log_->info("{}: job {} ended", options_.site, job_id_);
  return Status::Ok();
}

// The script fetches the model from the server and submits its result there itself,
// through this cell's relay; the site only hands over the task and waits for the report.
Status ClientRuntime::RunTask(const cell::Message& task) {
  round_ = task.h().value("current_round", -1);
  auto done = executor_->Execute(task);
  if (!done.ok()) return aborted_ ? AbortedStatus() : done.status();
  log_->info("{}: round {}: result accepted by the server", options_.site, round_);
  if (gc_rounds_ > 0 && (round_ + 1) % gc_rounds_ == 0) {
    base::TrimResult t = base::TrimMemory();
    log_->info("{}: memory trim: RSS {} -> {} MiB", options_.site, t.rss_before_bytes >> 20, t.rss_after_bytes >> 20);
  }
  return Status::Ok();
}

void ClientRuntime::ReportFailure(const Status& s) {
  const std::string cause = options_.site + " job " + job_id_ + " round " + std::to_string(round_) + ": " +
                            s.message();
  log_->error("{}", cause);
  outcome_ = Status(s.code(), cause);
  (void)cell_->Fire("server", cell::Message::Make("fl.failure", {{"site", options_.site},
                                                                 {"job_id", job_id_},
                                                                 {"round", round_},
                                                                 {"cause", cause}}));
  if (executor_) executor_->Finish();
}

}  // namespace ember::fl
