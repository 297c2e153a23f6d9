// TimerQueue: runs short tasks after a delay, on one thread of its own. The stream layer
// uses it for retry backoff, the transaction inactivity monitor and delayed test replies,
// so none of them occupies a cell worker while it waits.
//
//   TimerQueue::TaskId id = TimerQueue::Shared().After(2s, [] { Retry(); });
//   TimerQueue::Shared().Cancel(id);   // the task will not run
//
// Thread-safety: all methods are thread-safe. Tasks run one at a time on the queue's
// thread and must not block (post real work elsewhere). A task may call After/Cancel.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace ember::stream {

class TimerQueue {
 public:
  using TaskId = uint64_t;
  using Clock = std::chrono::steady_clock;

  // The process-wide queue, started on first use.
  static TimerQueue& Shared();

  TimerQueue();
  // Drops the tasks not yet run, then joins the thread.
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `task` once, `delay` from now. Returns an id for Cancel (never 0).
  TaskId After(std::chrono::milliseconds delay, std::function<void()> task);
  // Removes the task if it has not started; returns whether it did. The task is
  // destroyed outside the queue's lock.
  bool Cancel(TaskId id);
  size_t pending() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  std::multimap<Clock::time_point, TaskId> by_time_;
  std::unordered_map<TaskId, std::pair<Clock::time_point, std::function<void()>>> tasks_;
  TaskId next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace ember::stream
