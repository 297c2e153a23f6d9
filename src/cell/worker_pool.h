// WorkerPool: the threads that run message handlers and request completions, so user
// code never runs on (or blocks) an io thread.
//
//   WorkerPool pool(2, /*max_queued=*/10000);
//   if (!pool.Post([] { ... })) { /* stopping, or the queue is full */ }
//   pool.Stop();   // runs what is queued, then joins
//
// Thread-safety: all methods may be called from any thread; Stop() not from a worker.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ember::cell {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queued);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`. Returns false (dropping it) once Stop() began, or if `bounded` and
  // max_queued tasks are waiting. Completions that must run pass bounded = false.
  bool Post(std::function<void()> task, bool bounded = true);
  // Runs every queued task, then joins the threads. Idempotent.
  void Stop();
  bool IsWorkerThread() const;

 private:
  void Run();

  const size_t max_queued_;
  std::vector<std::thread> threads_;      // joined under join_mu_
  std::vector<std::thread::id> ids_;      // immutable after construction
  std::mutex join_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
};

}  // namespace ember::cell
