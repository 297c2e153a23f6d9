#include "net/io_pool.h"

#include <exception>

#include "base/log.h"

namespace ember::net {
namespace {

// A handler that throws must not take the io thread (and every connection on it) down.
void RunContext(asio::io_context* io) {
  for (;;) {
    try {
      io->run();
      return;
    } catch (const std::exception& e) {
      EMBER_LOG_ERROR("io thread: handler threw: {}", e.what());
    }
  }
}

}  // namespace

IoPool::IoPool(int threads) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    guards_.push_back(asio::make_work_guard(*contexts_.back()));
  }
  for (auto& io : contexts_) threads_.emplace_back(RunContext, io.get());
}

IoPool::~IoPool() { Stop(); }

asio::io_context& IoPool::Next() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

void IoPool::Stop() {
  std::lock_guard lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  guards_.clear();
  for (auto& io : contexts_) io->stop();
  for (auto& t : threads_) {
    if (t.get_id() == std::this_thread::get_id()) {
      EMBER_LOG_ERROR("IoPool::Stop called on its own io thread; detaching it");
      t.detach();
    } else if (t.joinable()) {
      t.join();
    }
  }
}

bool IoPool::IsIoThread() const {
  for (const auto& t : threads_) {
    if (t.get_id() == std::this_thread::get_id()) return true;
  }
  return false;
}

}  // namespace ember::net
