#include "stream/retry_policy.h"

#include <algorithm>

namespace ember::stream {

std::chrono::milliseconds RetryPolicy::Backoff(int retry) const {
  std::chrono::milliseconds delay = base_backoff;
  for (int i = 1; i < retry && delay < max_backoff; ++i) delay *= 2;  // stops before overflow
  return std::clamp(delay, std::chrono::milliseconds(0), max_backoff);
}

RetryPolicy RetryPolicy::FromConfig(const base::Config& config) {
  return {.max_retries = static_cast<int>(config.Get(base::kDownloadMaxRetries)),
          .base_backoff = config.Get(base::kDownloadRetryBackoff),
          .max_backoff = config.Get(base::kDownloadRetryMaxBackoff)};
}

}  // namespace ember::stream
