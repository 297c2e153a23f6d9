// RetryPolicy: how a timed-out (or disconnected) chunk request is retried. The delay
// before retry n (1-based) is base_backoff * 2^(n-1), capped at max_backoff: with the
// defaults 1 s, 2 s, 4 s. FLARE 2.7.2 uses the same shape (2, 4, 8 s, cap 60 s). The
// defaults are the config registry's (download_max_retries, download_retry_backoff,
// download_retry_max_backoff); FromConfig reads a loaded Config.
//
//   RetryPolicy p{.max_retries = 3, .base_backoff = 50ms};
//   if (status.IsRetryable() && retries < p.max_retries) Sleep(p.Backoff(++retries));
//
// Thread-safety: a value type.
#pragma once

#include <chrono>

#include "base/config.h"

namespace ember::stream {

struct RetryPolicy {
  // retries of one chunk after its first attempt
  int max_retries = static_cast<int>(base::DefaultOf(base::kDownloadMaxRetries));
  // delay before the first retry
  std::chrono::milliseconds base_backoff = base::DefaultOf(base::kDownloadRetryBackoff);
  // cap on any one delay
  std::chrono::milliseconds max_backoff = base::DefaultOf(base::kDownloadRetryMaxBackoff);

  static RetryPolicy FromConfig(const base::Config& config);

  // Delay before retry number `retry` (1-based). REQUIRES: retry >= 1.
  std::chrono::milliseconds Backoff(int retry) const;
};

}  // namespace ember::stream
