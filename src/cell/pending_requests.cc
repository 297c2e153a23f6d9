#include "cell/pending_requests.h"

namespace ember::cell {

void PendingRequests::Add(uint64_t req_id, PendingRequest request) {
  std::lock_guard lock(mu_);
  requests_[req_id] = std::move(request);
}

std::optional<PendingRequest> PendingRequests::Take(uint64_t req_id) {
  std::lock_guard lock(mu_);
  auto node = requests_.extract(req_id);
  if (node.empty()) return std::nullopt;
  return std::move(node.mapped());
}

std::vector<PendingRequest> PendingRequests::TakeByConnection(uint64_t conn_id) {
  std::vector<PendingRequest> out;
  std::lock_guard lock(mu_);
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.conn_id == conn_id) {
      out.push_back(std::move(it->second));
      it = requests_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::vector<PendingRequest> PendingRequests::TakeAll() {
  std::vector<PendingRequest> out;
  std::lock_guard lock(mu_);
  for (auto& [id, r] : requests_) out.push_back(std::move(r));
  requests_.clear();
  return out;
}

}  // namespace ember::cell
