// TaskBoard: the server's hand-off point between the workflow (controller thread) and
// the clients' get_task / submit_result requests (cell worker threads).
// Clients long-poll: a get_task with nothing to do is parked and answered as soon as a
// task is published, or with "wait" after `park_limit`.
// With `max_running` > 0 at most that many tasks are out at once (`ember simulate -t`): a
// task counts from the moment a site fetches it until its result arrives (ClaimResult);
// a site whose task would exceed the limit is parked until a slot frees.
//
//   TaskBoard board(5s, /*max_running=*/0);
//   board.Publish(round, {"site-1","site-2"}, header, global.body());
//   board.OnGetTask("site-1", responder);      // replies with the task header
//   auto model = board.Model("site-1", "r0-site-1");  // its model, for fl.get_model
//   board.End();                                // every later get_task gets "end"
//
// Thread-safety: all methods are thread-safe (guarded by mu_).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cell/cell.h"

namespace ember::fl {

class TaskBoard {
 public:
  using Clock = std::chrono::steady_clock;
  // `max_running`: tasks out at once; 0 = no limit.
  TaskBoard(std::chrono::milliseconds park_limit, int max_running)
      : park_limit_(park_limit), max_running_(max_running) {}

  // Makes a task for each of `sites`; task ids are "r<round>-<site>".
  void Publish(int round, const std::vector<std::string>& sites, const cell::Json& header,
               std::shared_ptr<cell::BodySource> body);
  // Marks the job finished: parked and later requests get task_name "end".
  void End();
  // Replies with the task's header plus "model_size" (bytes of its safetensors model);
  // the model itself is fetched with Model() (fl.get_model), so it can stream straight
  // to the training script through the site's relay.
  void OnGetTask(const std::string& site, cell::Responder responder);
  // The model of `site`'s outstanding task `task_id`; NotFound if that task is not
  // outstanding (another round, already answered, or never handed out).
  Result<std::shared_ptr<cell::BodySource>> Model(const std::string& site, const std::string& task_id) const;
  // Returns true (once) if `task_id` is the outstanding task of `site`; marks it claimed
  // so a duplicate submission is refused while the first one is being folded in. Frees
  // the task's slot and hands it to the longest-parked site still owed a task.
  bool ClaimResult(const std::string& site, const std::string& task_id);
  // Marks the claimed task of `site` done: its result has been folded in.
  void Complete(const std::string& site);
  // Takes back the task of `site` (the site was excluded from the round): it no longer
  // counts as pending, frees its slot and refuses a later result. False if the site has
  // no task, its result was already folded in, or its result is streaming in (claimed)
  // and `even_if_claimed` is false.
  bool Withdraw(const std::string& site, bool even_if_claimed);
  // Answers parked requests older than park_limit with "wait". Returns sites still owing results.
  void ExpireParked();
  std::set<std::string> sites_pending() const;
  // Sites that have been told "end" since End().
  size_t ended() const;

 private:
  struct Task {
    cell::Json header;
    std::shared_ptr<cell::BodySource> body;
    bool fetched = false;
    bool claimed = false;
    bool done = false;
  };
  struct Parked {
    cell::Responder responder;
    Clock::time_point since;
  };
  void ReplyLocked(const std::string& site, cell::Responder& r);
  bool SlotFreeLocked() const { return max_running_ <= 0 || running_ < max_running_; }
  // Answers parked sites that are owed a task, oldest first, while slots are free.
  void DispatchParkedLocked();

  const std::chrono::milliseconds park_limit_;
  const int max_running_;
  mutable std::mutex mu_;
  // Guarded by mu_.
  std::map<std::string, Task> tasks_;
  std::map<std::string, Parked> parked_;
  int running_ = 0;                          // fetched, result not yet arrived
  bool ended_ = false;
  std::set<std::string> told_end_;
};

}  // namespace ember::fl
