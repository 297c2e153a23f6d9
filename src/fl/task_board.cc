#include "fl/task_board.h"

namespace ember::fl {

void TaskBoard::Publish(int round, const std::vector<std::string>& sites, const cell::Json& header,
                        std::shared_ptr<cell::BodySource> body) {
  std::lock_guard lock(mu_);
  tasks_.clear();
  running_ = 0;
  for (const auto& site : sites) {
    Task t{header, body};
    t.header["task_id"] = "r" + std::to_string(round) + "-" + site;
    tasks_[site] = std::move(t);
  }
  DispatchParkedLocked();
}

void TaskBoard::DispatchParkedLocked() {
  while (SlotFreeLocked()) {
    auto oldest = parked_.end();
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      auto t = tasks_.find(it->first);
      if (t == tasks_.end() || t->second.fetched) continue;
      if (oldest == parked_.end() || it->second.since < oldest->second.since) oldest = it;
    }
    if (oldest == parked_.end()) return;
    ReplyLocked(oldest->first, oldest->second.responder);
    parked_.erase(oldest);
  }
}

void TaskBoard::End() {
  std::lock_guard lock(mu_);
  ended_ = true;
  tasks_.clear();
  for (auto& [site, p] : parked_) {
    p.responder.Reply({{"task_name", "end"}});
    told_end_.insert(site);
  }
  parked_.clear();
}

void TaskBoard::OnGetTask(const std::string& site, cell::Responder responder) {
  std::lock_guard lock(mu_);
  if (ended_) {
    told_end_.insert(site);
    return responder.Reply({{"task_name", "end"}});
  }
  auto it = tasks_.find(site);
  if (it != tasks_.end() && !it->second.fetched && SlotFreeLocked()) return ReplyLocked(site, responder);
  auto old = parked_.find(site);
  if (old != parked_.end()) old->second.responder.Reply({{"task_name", "wait"}, {"wait_s", 0}});
  parked_[site] = Parked{std::move(responder), Clock::now()};
}

void TaskBoard::ReplyLocked(const std::string& site, cell::Responder& r) {
  Task& t = tasks_.at(site);
  t.fetched = true;
  ++running_;
  cell::Json h = t.header;
  h["model_size"] = t.body ? t.body->size() : 0;
  r.Reply(std::move(h));
}

Result<std::shared_ptr<cell::BodySource>> TaskBoard::Model(const std::string& site,
                                                           const std::string& task_id) const {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(site);
  if (it == tasks_.end() || !it->second.fetched || it->second.claimed ||
      it->second.header.value("task_id", "") != task_id) {
    return Status::NotFound("task '" + task_id + "' is not outstanding for " + site);
  }
  return it->second.body;
}

bool TaskBoard::ClaimResult(const std::string& site, const std::string& task_id) {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(site);
  if (it == tasks_.end() || it->second.claimed || it->second.header.value("task_id", "") != task_id) {
    return false;
  }
  it->second.claimed = true;
  if (it->second.fetched) --running_;
  DispatchParkedLocked();
  return true;
}

void TaskBoard::Complete(const std::string& site) {
  std::lock_guard lock(mu_);
  if (auto it = tasks_.find(site); it != tasks_.end()) it->second.done = true;
}

bool TaskBoard::Withdraw(const std::string& site, bool even_if_claimed) {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(site);
  if (it == tasks_.end() || it->second.done || (it->second.claimed && !even_if_claimed)) return false;
  Task& t = it->second;
  if (t.fetched && !t.claimed) --running_;
  t.claimed = t.done = true;
  DispatchParkedLocked();
  return true;
}

void TaskBoard::ExpireParked() {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  for (auto it = parked_.begin(); it != parked_.end();) {
    if (now - it->second.since >= park_limit_) {
      it->second.responder.Reply({{"task_name", "wait"}, {"wait_s", 0}});
      it = parked_.erase(it);
    } else {
      ++it;
    }
  }
}

std::set<std::string> TaskBoard::sites_pending() const {
  std::lock_guard lock(mu_);
  std::set<std::string> out;
  for (const auto& [site, t] : tasks_) {
    if (!t.done) out.insert(site);
  }
  return out;
}

size_t TaskBoard::ended() const {
  std::lock_guard lock(mu_);
  return told_end_.size();
}

}  // namespace ember::fl
