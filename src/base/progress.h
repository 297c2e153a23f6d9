// TransferProgress: progress lines for long transfers (bytes, rate, ETA). A transfer that
// ends within `quiet` never reports; a longer one reports at most once per `every`.
//
//   TransferProgress p(total_bytes);
//   if (auto line = p.Add(n)) log->info("site-1 round 2: result {}", *line);
//   // "512.0/1024.0 MiB (50%), 210.3 MiB/s, ETA 2.4 s"
//
// Thread-safety: Add may be called from any thread (one transfer may be fed by several
// workers in turn); the figures are atomic, a line is produced by one caller at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace ember::base {

class TransferProgress {
 public:
  using Clock = std::chrono::steady_clock;
  explicit TransferProgress(uint64_t total, std::chrono::milliseconds quiet = std::chrono::seconds(3),
                            std::chrono::milliseconds every = std::chrono::seconds(5));
  // `n` more bytes moved; returns a line when one is due.
  std::optional<std::string> Add(uint64_t n, Clock::time_point now = Clock::now());
  // The line for `done` bytes `elapsed` after the start (exposed for tests).
  static std::string Format(uint64_t done, uint64_t total, double elapsed_s);
  uint64_t done() const { return done_.load(); }

 private:
  const uint64_t total_;
  const Clock::duration quiet_;
  const Clock::duration every_;
  const Clock::time_point start_;
  std::atomic<uint64_t> done_{0};
  std::mutex mu_;
  Clock::time_point next_;  // guarded by mu_
};

}  // namespace ember::base
