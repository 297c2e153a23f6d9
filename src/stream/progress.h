// Transfer progress for downloads and pushes: bytes done of total, rate and ETA, reported
// through a callback at most every `interval`, and logged every `log_interval` for
// transfers that last longer than that (short transfers stay quiet).
//
//   ProgressMeter meter("download R12 from server", total, on_progress, 1s, 5s);
//   meter.Update(bytes_so_far);   // after each chunk
//   meter.Finish(Status::Ok());   // final report (done = true) and a summary log line
//
// MB means 10^6 bytes. Thread-safety: all methods are thread-safe; the callback runs on
// the thread that called Update/Finish, outside the meter's lock. Callers that need the
// callback serialized (downloads do) call Update/Finish from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "base/status.h"

namespace ember::stream {

struct TransferProgress {
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;  // 0 if not known yet
  std::chrono::milliseconds elapsed{0};
  double mb_per_s = 0;                           // average since the transfer started
  std::optional<std::chrono::milliseconds> eta;  // unknown without a total or a rate
  bool done = false;                             // the last report of this transfer

  // bytes_done / bytes_total, or 0 if the total is unknown.
  double fraction() const;
};

using ProgressCallback = std::function<void(const TransferProgress&)>;

// "12.0/64.0 MB (18%), 85.3 MB/s, ETA 1 s"
std::string FormatProgress(const TransferProgress& p);

class ProgressMeter {
 public:
  using Clock = std::chrono::steady_clock;

  ProgressMeter(std::string what, uint64_t total, ProgressCallback callback,
                std::chrono::milliseconds interval, std::chrono::milliseconds log_interval,
                Clock::time_point start = Clock::now());

  void SetTotal(uint64_t total);
  // Records `bytes_done` (a smaller value than before is ignored); reports if `interval`
  // passed since the last report.
  void Update(uint64_t bytes_done, Clock::time_point now = Clock::now());
  // Final report (done = true). Logs a summary if the transfer was long or failed.
  void Finish(const Status& status, Clock::time_point now = Clock::now());
  TransferProgress Snapshot(Clock::time_point now = Clock::now()) const;

 private:
  TransferProgress Compute(Clock::time_point now) const;  // REQUIRES: mu_ held

  const std::string what_;
  const ProgressCallback callback_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds log_interval_;
  const Clock::time_point start_;

  mutable std::mutex mu_;
  // Guarded by mu_.
  uint64_t total_;
  uint64_t done_ = 0;
  bool finished_ = false;
  Clock::time_point last_report_;
  Clock::time_point last_log_;
};

}  // namespace ember::stream
