#include "fl/stop_condition.h"

#include <gtest/gtest.h>

namespace ember::fl {
namespace {

TEST(StopCondition, ParsesAndComparesAggregatedMetrics) {
  auto c = StopCondition::Parse("accuracy >= 0.9");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->IsMet({{"accuracy", 0.93}}));
  EXPECT_TRUE(c->IsMet({{"accuracy", 0.9}}));
  EXPECT_FALSE(c->IsMet({{"accuracy", 0.89}}));
  EXPECT_FALSE(c->IsMet({{"loss", 0.1}}));
  EXPECT_TRUE(StopCondition::Parse("loss < 0.2")->IsMet({{"loss", 0.1}}));
}

TEST(StopCondition, RejectsMalformedText) {
  EXPECT_FALSE(StopCondition::Parse("accuracy").ok());
  EXPECT_FALSE(StopCondition::Parse("accuracy => 0.9").ok());
  EXPECT_FALSE(StopCondition::Parse("accuracy >= high").ok());
  EXPECT_FALSE(StopCondition::Parse("accuracy >= 0.9 extra").ok());
}

}  // namespace
}  // namespace ember::fl
