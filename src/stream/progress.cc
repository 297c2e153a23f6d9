#include "stream/progress.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/log.h"

namespace ember::stream {
namespace {

using std::chrono::milliseconds;

double Mb(uint64_t bytes) { return static_cast<double>(bytes) / 1e6; }

std::string FormatDuration(milliseconds d) {
  if (d < std::chrono::seconds(1)) return fmt::format("{} ms", d.count());
  if (d < std::chrono::minutes(2)) return fmt::format("{:.1f} s", d.count() / 1000.0);
  return fmt::format("{} min {} s", d.count() / 60000, (d.count() / 1000) % 60);
}

}  // namespace

double TransferProgress::fraction() const {
  return bytes_total == 0 ? 0.0 : static_cast<double>(bytes_done) / static_cast<double>(bytes_total);
}

std::string FormatProgress(const TransferProgress& p) {
  std::string s = p.bytes_total > 0
                      ? fmt::format("{:.1f}/{:.1f} MB ({:.0f}%)", Mb(p.bytes_done), Mb(p.bytes_total),
                                    100.0 * p.fraction())
                      : fmt::format("{:.1f} MB", Mb(p.bytes_done));
  s += fmt::format(", {:.1f} MB/s", p.mb_per_s);
  if (p.done) return s + fmt::format(", {}", FormatDuration(p.elapsed));
  if (p.eta) s += fmt::format(", ETA {}", FormatDuration(*p.eta));
  return s;
}

ProgressMeter::ProgressMeter(std::string what, uint64_t total, ProgressCallback callback,
                             milliseconds interval, milliseconds log_interval, Clock::time_point start)
    : what_(std::move(what)),
      callback_(std::move(callback)),
      interval_(interval),
      log_interval_(log_interval),
      start_(start),
      total_(total),
      last_report_(start),
      last_log_(start) {}

void ProgressMeter::SetTotal(uint64_t total) {
  std::lock_guard lock(mu_);
  total_ = total;
}

TransferProgress ProgressMeter::Compute(Clock::time_point now) const {
  TransferProgress p;
  p.bytes_done = done_;
  p.bytes_total = total_;
  p.elapsed = std::chrono::duration_cast<milliseconds>(now - start_);
  p.done = finished_;
  double seconds = std::chrono::duration<double>(now - start_).count();
  if (seconds > 0) p.mb_per_s = Mb(done_) / seconds;
  if (total_ >= done_ && total_ > 0 && done_ > 0 && seconds > 0) {
    double bytes_per_s = static_cast<double>(done_) / seconds;
    p.eta = milliseconds(static_cast<int64_t>(1000.0 * static_cast<double>(total_ - done_) / bytes_per_s));
  }
  return p;
}

void ProgressMeter::Update(uint64_t bytes_done, Clock::time_point now) {
  TransferProgress p;
  bool report = false, log = false;
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
    done_ = std::max(done_, bytes_done);  // reports may race; progress never goes back
    if (callback_ && now - last_report_ >= interval_) {
      last_report_ = now;
      report = true;
    }
    if (now - last_log_ >= log_interval_) {
      last_log_ = now;
      log = true;
    }
    p = Compute(now);
  }
  if (log) EMBER_LOG_INFO("{}: {}", what_, FormatProgress(p));
  if (report) callback_(p);
}

void ProgressMeter::Finish(const Status& status, Clock::time_point now) {
  TransferProgress p;
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
    finished_ = true;
    p = Compute(now);
  }
  if (!status.ok()) {
    if (status.message().find(what_) != std::string::npos) {  // the status already names the transfer
      EMBER_LOG_WARN("{} (after {})", status.ToString(), FormatProgress(p));
    } else {
      EMBER_LOG_WARN("{} failed after {}: {}", what_, FormatProgress(p), status.ToString());
    }
  } else if (p.elapsed >= log_interval_) {
    EMBER_LOG_INFO("{} done: {}", what_, FormatProgress(p));
  }
  if (callback_) callback_(p);
}

TransferProgress ProgressMeter::Snapshot(Clock::time_point now) const {
  std::lock_guard lock(mu_);
  return Compute(now);
}

}  // namespace ember::stream
