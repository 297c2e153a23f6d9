#include "stream/timer_queue.h"

#include <vector>

namespace ember::stream {

TimerQueue& TimerQueue::Shared() {
  static TimerQueue queue;
  return queue;
}

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() {
  decltype(tasks_) dropped;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(tasks_);
    by_time_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

TimerQueue::TaskId TimerQueue::After(std::chrono::milliseconds delay, std::function<void()> task) {
  Clock::time_point at = Clock::now() + std::max(delay, std::chrono::milliseconds(0));
  TaskId id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    if (stopping_) return id;  // never runs; the task is dropped below
    by_time_.emplace(at, id);
    tasks_.emplace(id, std::make_pair(at, std::move(task)));
  }
  cv_.notify_one();
  return id;
}

bool TimerQueue::Cancel(TaskId id) {
  std::function<void()> dropped;
  std::lock_guard lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return false;
  auto [first, last] = by_time_.equal_range(it->second.first);
  for (auto t = first; t != last; ++t) {
    if (t->second == id) {
      by_time_.erase(t);
      break;
    }
  }
  dropped = std::move(it->second.second);
  tasks_.erase(it);
  // `dropped` is destroyed after the lock is released (declared before it).
  return true;
}

size_t TimerQueue::pending() const {
  std::lock_guard lock(mu_);
  return tasks_.size();
}

void TimerQueue::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (by_time_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = by_time_.begin();
    if (Clock::time_point due = first->first; due > Clock::now()) {
      cv_.wait_until(lock, due);  // a copy: Cancel may erase the node while we wait
      continue;
    }
    TaskId id = first->second;
    by_time_.erase(first);
    auto node = tasks_.extract(id);
    lock.unlock();
    if (!node.empty()) node.mapped().second();
    node = {};  // destroy the task (and what it captured) before re-locking
    lock.lock();
  }
}

}  // namespace ember::stream
