#include <gtest/gtest.h>

#include "base/fuzz/fuzz_harness.h"

namespace ember::fuzz {
namespace {

TEST(SplitPlan, CoversTheStreamExactly) {
  const uint8_t data[] = {0x23, 0, 5, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g'};
  SplitPlan plan = PlanSplits(data);
  EXPECT_EQ(plan.options, 2);
  EXPECT_EQ(plan.stream.size(), 7u);
  EXPECT_EQ(plan.chunks, (std::vector<size_t>{0, 5, 0, 0, 2}));
}

TEST(SplitPlan, EndsAFullCycleOfEmptyReadsWithTheRest) {
  const uint8_t zeros[] = {0x02, 0, 0, 'x', 'y'};
  EXPECT_EQ(PlanSplits(zeros).chunks, (std::vector<size_t>{0, 0, 2}));
}

TEST(SplitPlan, NoLengthsFeedsTheStreamInOnePiece) {
  const uint8_t whole[] = {0x00, 'x'};
  EXPECT_EQ(PlanSplits(whole).chunks, (std::vector<size_t>{1}));
}

}  // namespace
}  // namespace ember::fuzz
