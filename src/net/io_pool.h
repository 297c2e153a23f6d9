// IoPool: N io threads, each running its own asio::io_context. A connection is placed on
// one context for its whole life, so its state needs no lock (asio io_context-per-thread).
//
//   IoPool pool(2);
//   asio::post(pool.Next(), [] { /* runs on an io thread */ });
//   pool.Stop();   // stops the contexts and joins the threads
//
// Thread-safety: Next() and IsIoThread() may be called from any thread; Stop() from any
// thread except the pool's own.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ember::net {

class IoPool {
 public:
  // REQUIRES: threads >= 1.
  explicit IoPool(int threads);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  // The next context, round-robin.
  asio::io_context& Next();
  // Stops every context (pending handlers are dropped) and joins the threads. Idempotent.
  void Stop();
  // True on one of this pool's threads.
  bool IsIoThread() const;

 private:
  using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;

  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<WorkGuard> guards_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> next_{0};
  std::mutex stop_mu_;
  bool stopped_ = false;  // guarded by stop_mu_
};

}  // namespace ember::net
