#include "base/memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

namespace ember::base {
namespace {

TEST(Memory, ReportsAPositiveCurrentAndPeakRss) {
  int64_t rss = CurrentRssBytes();
  int64_t peak = PeakRssBytes();
  EXPECT_GT(rss, 0);
  EXPECT_GT(peak, 0);
  EXPECT_GE(peak, rss / 2);  // peak is sampled separately; it cannot be far below rss
}

TEST(Memory, PeakRssGrowsWhenAPageRangeIsTouched) {
  constexpr size_t kBytes = 64 << 20;
  int64_t peak_before = PeakRssBytes();
  auto block = std::make_unique<char[]>(kBytes);
  std::memset(block.get(), 1, kBytes);
  asm volatile("" : : "r"(block.get()) : "memory");  // keep the writes
  EXPECT_GE(PeakRssBytes(), peak_before);
  EXPECT_GE(PeakRssBytes(), static_cast<int64_t>(kBytes));
}

TEST(Memory, TrimReportsRssBeforeAndAfter) {
  {
    auto block = std::make_unique<char[]>(8 << 20);
    std::memset(block.get(), 1, 8 << 20);
    asm volatile("" : : "r"(block.get()) : "memory");
  }
  TrimResult t = TrimMemory();
  EXPECT_GT(t.rss_before_bytes, 0);
  EXPECT_GT(t.rss_after_bytes, 0);
}

}  // namespace
}  // namespace ember::base
