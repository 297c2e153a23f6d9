#include "base/memory.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ember::base {

TrimResult TrimMemory() {
  TrimResult result;
  result.rss_before_bytes = CurrentRssBytes();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  result.rss_after_bytes = CurrentRssBytes();
  return result;
}

int64_t CurrentRssBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "re");
  if (!f) return -1;
  long long total_pages = 0, resident_pages = 0;
  int n = std::fscanf(f, "%lld %lld", &total_pages, &resident_pages);
  std::fclose(f);
  long page = sysconf(_SC_PAGESIZE);
  if (n != 2 || page <= 0) return -1;
  return static_cast<int64_t>(resident_pages) * page;
}

int64_t PeakRssBytes() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return -1;
  char line[256];
  long long kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) {
      if (std::sscanf(line + 6, "%lld", &kib) != 1) kib = -1;
      break;
    }
  }
  std::fclose(f);
  return kib < 0 ? -1 : static_cast<int64_t>(kib) * 1024;
}

}  // namespace ember::base
