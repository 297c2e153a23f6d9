#include "fl/server.h"

#include <optional>

#include "fl/fedavg.h"
#include "fl/progress_body.h"
#include "wire/message_header.h"

namespace ember::fl {

using namespace std::chrono_literals;

namespace {
constexpr auto kPollInterval = 100ms;

// A site speaks for itself, and so do the cells under it (its training script).
bool IsFromSite(const std::string& src, const std::string& site) {
  return !site.empty() && wire::IsSameOrUnder(src, site);
}

std::optional<std::string> FirstIn(const std::set<std::string>& a, const std::set<std::string>& b) {
  for (const auto& x : a) {
    if (b.count(x)) return x;
  }
  return std::nullopt;
}
}  // namespace

ServerRuntime::ServerRuntime(ServerOptions options)
    : options_(std::move(options)), log_(options_.logger), board_(options_.config->Get(base::kTaskParkTimeout), options_.max_running_tasks) {
  if (!log_) log_ = spdlog::default_logger();
}

ServerRuntime::~ServerRuntime() {
  Abort("server shut down");
  if (workflow_thread_.joinable()) workflow_thread_.join();
  if (cell_) cell_->Stop();
}

Result<std::unique_ptr<ServerRuntime>> ServerRuntime::Start(ServerOptions options) {
  EMBER_ASSIGN_OR_RETURN(options.config, base::ConfigOrEnvironment(std::move(options.config)));
  std::unique_ptr<ServerRuntime> s(new ServerRuntime(std::move(options)));
  cell::CellOptions co;
  co.name = "server";
  co.listen = s->options_.listen;
  co.worker_threads = 4;
  co.config = s->options_.config;
  EMBER_ASSIGN_OR_RETURN(s->cell_, cell::Cell::Start(co));
  s->RegisterHandlers();
  s->log_->info("server listening on {} for job {} ({})", s->address(), s->options_.job.name,
                s->options_.job_id);
  if (s->options_.max_running_tasks > 0) {
    s->log_->info("at most {} task(s) run at once", s->options_.max_running_tasks);
  }
  s->workflow_thread_ = std::thread([raw = s.get()] { raw->RunWorkflow(); });
  return s;
}

void ServerRuntime::RegisterHandlers() {
  cell_->Handle("fl.register", [this](cell::Message m, cell::Responder r) { OnRegister(std::move(m), r); });
  cell_->Handle("fl.get_task", [this](cell::Message m, cell::Responder r) {
    board_.OnGetTask(m.h().value("site", r.peer()), std::move(r));
  });
  cell_->Handle("fl.get_model", [this](cell::Message m, cell::Responder r) { OnGetModel(m, r); });
  cell_->HandleStream(
      "fl.submit_result", [this](const cell::Message& head) { return OnSubmitHead(head); },
      [this](cell::Message m, cell::Responder r) { OnSubmitDone(std::move(m), r); });
  cell_->Handle("fl.failure", [this](cell::Message m, cell::Responder) { OnFailure(std::move(m)); });
  cell_->OnPeer([this](const std::string& peer, bool connected) { OnPeer(peer, connected); });
}

void ServerRuntime::OnRegister(cell::Message m, cell::Responder r) {
  const std::string site = m.h().value("site", r.peer());
  {
    std::lock_guard lock(mu_);
    sites_.insert(site);
  }
  cv_.notify_all();
  log_->info("site {} registered", site);
  r.Reply({{"job_id", options_.job_id}, {"job_name", options_.job.name}});
}

// The model of a task, asked for by the site's training script (through the site's cell,
// which relays it as it streams).
void ServerRuntime::OnGetModel(const cell::Message& m, cell::Responder r) {
  const std::string site = m.h().value("site", "");
  if (!IsFromSite(m.src(), site)) {
    return r.Error(StatusCode::kInvalidArgument, m.src() + " may not fetch the model of site '" + site + "'");
  }
  const std::string task_id = m.h().value("task_id", "");
  auto model = board_.Model(site, task_id);
  if (!model.ok()) return r.Error(model.status().code(), model.status().message());
  r.Reply({}, WithProgress(*model, log_, site + " job " + options_.job_id + " task " + task_id + ": sending model"));
}

namespace {

// Fails the job if a site's result cannot be folded in (bad tensors); a result whose
// stream breaks off (the site disconnected, the sender aborted) is rolled back by the
// inner consumer's Cancel and its site excluded from the round instead.
class GuardedConsumer final : public cell::BodyConsumer {
 public:
  GuardedConsumer(std::unique_ptr<cell::BodyConsumer> inner, std::function<void(const Status&)> fail,
                  std::function<void(const Status&)> broke)
      : inner_(std::move(inner)), fail_(std::move(fail)), broke_(std::move(broke)) {}
  Status Write(std::span<const uint8_t> chunk) override { return Check(inner_->Write(chunk)); }
  Status Finish() override { return Check(inner_->Finish()); }
  void Cancel(const Status& why) override {
    inner_->Cancel(why);
    if (!failed_) broke_(why);
  }

 private:
  Status Check(Status s) {
    if (!s.ok()) {
      failed_ = true;
      fail_(s);
    }
    return s;
  }
  std::unique_ptr<cell::BodyConsumer> inner_;
  std::function<void(const Status&)> fail_;
  std::function<void(const Status&)> broke_;
  bool failed_ = false;  // the consumer refused the result (not a broken stream)
};

}  // namespace

// At the HEAD of a result: claim the task and stream the body into the round's folder.
Result<std::unique_ptr<cell::BodyConsumer>> ServerRuntime::OnSubmitHead(const cell::Message& head) {
  const std::string site = head.h().value("site", head.src());
  const std::string task_id = head.h().value("task_id", "");
  if (!IsFromSite(head.src(), site)) {
    return Status::InvalidArgument(head.src() + " may not submit results for site '" + site + "'");
  }
  if (!board_.ClaimResult(site, task_id)) {
    log_->warn("ignoring result {} from {}: not an outstanding task", task_id, site);
    return Status::InvalidArgument("task " + task_id + " is not outstanding for " + site);
  }
  ResultStarter start;
  int round = -1;
  {
    std::lock_guard lock(mu_);
    start = on_result_;
    round = round_;
  }
  if (!start) return Status::FailedPrecondition("no round running");
  const std::string context = site + " job " + options_.job_id + " round " + std::to_string(round) +
                              ": result rejected";
  auto consumer = start(site, head.h(), head.header.value("body_size", uint64_t{0}));
  if (!consumer.ok()) {
    Fail(consumer.status().WithContext(context));
    return consumer.status();
  }
  return std::unique_ptr<cell::BodyConsumer>(new GuardedConsumer(
      std::move(consumer).value(), [this, context](const Status& s) { Fail(s.WithContext(context)); },
      [this, site](const Status& s) { Exclude(site, "its result broke off (" + s.message() + ")", true); }));
}

// Every byte of the result was folded in: the site's task is done.
void ServerRuntime::OnSubmitDone(cell::Message m, cell::Responder r) {
  board_.Complete(m.h().value("site", m.src()));
  cv_.notify_all();
  r.Reply();
}

void ServerRuntime::OnFailure(cell::Message m) {
  const std::string cause = m.h().value("cause", "unknown failure");
  Fail(Status::Aborted(cause));
}

void ServerRuntime::OnPeer(const std::string& peer, bool connected) {
  std::lock_guard lock(mu_);
  if (connected) {
    disconnected_.erase(peer);
    return;
  }
  if (done_ || !sites_.count(peer)) return;
  disconnected_.insert(peer);
  cv_.notify_all();  // RunRound fails the job if `peer` owes a result
}

void ServerRuntime::SiteLost(const std::string& site, const std::string& cause) {
  {
    std::lock_guard lock(mu_);
    if (done_ || !failure_.ok()) return;
    failure_ = Status::Unavailable(site + " job " + options_.job_id + " round " + std::to_string(round_) +
                                   ": " + cause);
  }
  cv_.notify_all();
}

void ServerRuntime::Fail(Status s) {
  {
    std::lock_guard lock(mu_);
    if (failure_.ok()) failure_ = std::move(s);
  }
  cv_.notify_all();
}

void ServerRuntime::Exclude(const std::string& site, const std::string& why, bool streaming) {
  int round = -1;
  {
    std::lock_guard lock(mu_);
    if (done_ || excluded_.count(site) || !board_.Withdraw(site, streaming)) return;
    excluded_[site] = why;
    round = round_;
  }
  log_->warn("{} job {} round {}: excluded from the round: {}", site, options_.job_id, round, why);
  cv_.notify_all();
}

std::vector<std::string> ServerRuntime::ConnectedSitesLocked() const {
  std::vector<std::string> out;
  for (const auto& s : sites_) {
    if (!disconnected_.count(s)) out.push_back(s);
  }
  return out;
}

Status ServerRuntime::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

void ServerRuntime::Abort(const std::string& reason) { Fail(Status::Aborted(reason)); }

Result<std::vector<std::string>> ServerRuntime::WaitForSites(int n) {
  std::unique_lock lock(mu_);
  auto last_log = std::chrono::steady_clock::now();
  while (static_cast<int>(ConnectedSitesLocked().size()) < n && failure_.ok()) {
    cv_.wait_for(lock, 500ms);
    if (std::chrono::steady_clock::now() - last_log > 10s) {
      log_->info("waiting for sites: {}/{} connected ({} registered)", ConnectedSitesLocked().size(), n,
                 sites_.size());
      last_log = std::chrono::steady_clock::now();
    }
  }
  if (!failure_.ok()) return failure_;
  return ConnectedSitesLocked();
}

Result<Exclusions> ServerRuntime::RunRound(int round, const std::vector<std::string>& sites,
                                           const cell::Json& task, std::shared_ptr<cell::BodySource> body,
                                           ResultStarter on_result) {
  {
    std::lock_guard lock(mu_);
    round_ = round;
    on_result_ = std::move(on_result);
    excluded_.clear();
  }
  board_.Publish(round, sites, task, std::move(body));
  const double timeout_s = options_.job.server.task_timeout_s;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::unique_lock lock(mu_);
  while (failure_.ok()) {
    lock.unlock();
    board_.ExpireParked();
    const auto pending = board_.sites_pending();
    lock.lock();
    if (pending.empty()) break;
    if (auto gone = FirstIn(pending, disconnected_)) {
      // A result already streaming in ends one way or the other (the disconnect cancels
      // it, or it completed just before); only a site with none is excluded here.
      lock.unlock();
      Exclude(*gone, "disconnected before its result arrived", false);
      lock.lock();
    }
    if (timeout_s > 0 && std::chrono::steady_clock::now() > deadline) {
      failure_ = Status::DeadlineExceeded("job " + options_.job_id + " round " + std::to_string(round) +
                                          ": no result within task_timeout_s from " + *pending.begin());
      break;
    }
    cv_.wait_for(lock, kPollInterval);
  }
  on_result_ = nullptr;
  if (!failure_.ok()) return failure_;
  return excluded_;
}

void ServerRuntime::RunWorkflow() {
  FedAvg workflow(options_.job.server, options_.job_id, options_.workspace, log_);
  Status s = workflow.Run(*this);
  board_.End();
  if (s.ok()) DrainEnd();  // after a failure the sites are aborted instead
  std::lock_guard lock(mu_);
  outcome_ = s;
  done_ = true;
  cv_.notify_all();
}

// Waits (bounded) until every registered site has been told "end", so sites shut their
// scripts down cleanly instead of finding the server gone.
void ServerRuntime::DrainEnd() {
  const auto deadline = std::chrono::steady_clock::now() + options_.config->Get(base::kEndRunDrainTimeout);
  std::unique_lock lock(mu_);
  while (board_.ended() < sites_.size() && std::chrono::steady_clock::now() < deadline) {
    cv_.wait_for(lock, kPollInterval);
  }
}

Status ServerRuntime::Wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return done_; });
  return outcome_;
}

bool ServerRuntime::WaitFor(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return done_; });
}

}  // namespace ember::fl
