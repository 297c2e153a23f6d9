// PendingRequests: requests this cell sent and is waiting on, by req_id. Each entry
// remembers the connection it left on, so a dropped connection fails its requests at
// once (kUnavailable) instead of letting them run into their timeout.
//
//   pending.Add(id, {.done = cb, .timer = t, .conn_id = c->id(), .what = "'echo' to server"});
//   if (auto p = pending.Take(id)) p->done(reply);
//
// Thread-safety: thread-safe.
#pragma once

#include <asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "cell/message.h"

namespace ember::cell {

struct PendingRequest {
  std::function<void(Result<Message>)> done;
  std::shared_ptr<asio::steady_timer> timer;  // the deadline; cancel on its executor
  uint64_t conn_id = 0;                       // first hop; 0 = delivered locally
  std::string what;                           // "'topic' to dst", for error messages
};

class PendingRequests {
 public:
  void Add(uint64_t req_id, PendingRequest request);
  // Removes and returns the request, or nullopt if it already completed.
  std::optional<PendingRequest> Take(uint64_t req_id);
  std::vector<PendingRequest> TakeByConnection(uint64_t conn_id);
  std::vector<PendingRequest> TakeAll();

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, PendingRequest> requests_;  // guarded by mu_
};

}  // namespace ember::cell
