#include "base/progress.h"

#include <fmt/format.h>

namespace ember::base {

TransferProgress::TransferProgress(uint64_t total, std::chrono::milliseconds quiet, std::chrono::milliseconds every)
    : total_(total), quiet_(quiet), every_(every), start_(Clock::now()), next_(start_ + quiet) {}

std::optional<std::string> TransferProgress::Add(uint64_t n, Clock::time_point now) {
  const uint64_t done = done_.fetch_add(n) + n;
  if (now < next_) return std::nullopt;  // racy read: at worst one line late or skipped
  std::lock_guard lock(mu_);
  if (now < next_) return std::nullopt;
  next_ = now + every_;
  return Format(done, total_, std::chrono::duration<double>(now - start_).count());
}

std::string TransferProgress::Format(uint64_t done, uint64_t total, double elapsed_s) {
  const double mib = 1 << 20;
  const double rate = elapsed_s > 0 ? done / mib / elapsed_s : 0;
  std::string line = fmt::format("{:.1f}/{:.1f} MiB", done / mib, total / mib);
  if (total > 0) line += fmt::format(" ({:.0f}%)", 100.0 * done / total);
  line += fmt::format(", {:.1f} MiB/s", rate);
  if (rate > 0 && total > done) line += fmt::format(", ETA {:.1f} s", (total - done) / mib / rate);
  return line;
}

}  // namespace ember::base
