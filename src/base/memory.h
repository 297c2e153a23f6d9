// Process memory figures and returning freed heap pages to the OS. The server calls
// TrimMemory after each aggregation round: glibc keeps freed model-sized buffers in its
// arenas, so RSS stays at the peak of the round unless they are trimmed.
//
//   TrimResult t = TrimMemory();
//   EMBER_LOG_INFO("trimmed {} MiB", (t.rss_before_bytes - t.rss_after_bytes) >> 20);
//   EMBER_LOG_INFO("peak RSS {} MiB", PeakRssBytes() >> 20);
//
// Thread-safety: all functions may be called from any thread. Figures are for the whole
// process. On a system without /proc (or without glibc) they return -1 (trim is a no-op).
#pragma once

#include <cstdint>

namespace ember::base {

struct TrimResult {
  int64_t rss_before_bytes = -1;
  int64_t rss_after_bytes = -1;
};

// malloc_trim(0) on glibc (returns free memory at the top and inside every arena).
TrimResult TrimMemory();

// Resident set size now, from /proc/self/statm.
int64_t CurrentRssBytes();

// Highest resident set size so far (VmHWM in /proc/self/status).
int64_t PeakRssBytes();

}  // namespace ember::base
