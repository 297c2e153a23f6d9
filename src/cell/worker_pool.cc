#include "cell/worker_pool.h"

#include <exception>

#include "base/log.h"

namespace ember::cell {

WorkerPool::WorkerPool(int threads, size_t max_queued) : max_queued_(max_queued) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  for (const auto& t : threads_) ids_.push_back(t.get_id());
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::Post(std::function<void()> task, bool bounded) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || (bounded && tasks_.size() >= max_queued_)) return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::Run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      EMBER_LOG_ERROR("worker task threw: {}", e.what());
    }
  }
}

void WorkerPool::Stop() {
  std::lock_guard join_lock(join_mu_);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (!t.joinable()) continue;
    if (t.get_id() == std::this_thread::get_id()) {
      EMBER_LOG_ERROR("WorkerPool::Stop called from a worker; detaching it");
      t.detach();
    } else {
      t.join();
    }
  }
}

bool WorkerPool::IsWorkerThread() const {
  for (const auto& id : ids_) {
    if (id == std::this_thread::get_id()) return true;
  }
  return false;
}

}  // namespace ember::cell
