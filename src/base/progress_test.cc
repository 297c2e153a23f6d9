#include "base/progress.h"

#include <gtest/gtest.h>

namespace ember::base {
namespace {

using namespace std::chrono_literals;

TEST(TransferProgress, FormatsBytesRateAndEta) {
  EXPECT_EQ(TransferProgress::Format(512ull << 20, 1024ull << 20, 2.0),
            "512.0/1024.0 MiB (50%), 256.0 MiB/s, ETA 2.0 s");
  EXPECT_EQ(TransferProgress::Format(0, 0, 0.0), "0.0/0.0 MiB, 0.0 MiB/s");
}

TEST(TransferProgress, ShortTransfersStayQuietLongOnesReportPeriodically) {
  const auto t0 = TransferProgress::Clock::now();
  TransferProgress p(100 << 20, 3000ms, 5000ms);
  EXPECT_FALSE(p.Add(10 << 20, t0 + 1s));
  auto first = p.Add(10 << 20, t0 + 3500ms);
  ASSERT_TRUE(first);
  EXPECT_NE(first->find("20.0/100.0 MiB (20%)"), std::string::npos) << *first;
  EXPECT_FALSE(p.Add(10 << 20, t0 + 6s));  // within `every` of the last line
  EXPECT_TRUE(p.Add(10 << 20, t0 + 9s));
  EXPECT_EQ(p.done(), 40u << 20);
}

}  // namespace
}  // namespace ember::base
