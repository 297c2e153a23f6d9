#include "tensor/streaming_sum.h"

#include <gtest/gtest.h>

#include <thread>

#include "tensor/half.h"

namespace ember::tensor {
namespace {

std::span<const uint8_t> Bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

std::vector<TensorInfo> Model() {
  return {{"w", DType::kF32, {4}, 0, 16}, {"n", DType::kI32, {2}, 16, 24}};
}

TEST(StreamingSum, InterleavedContributionsGiveTheWeightedMean) {
  StreamingSum sum(Model(), AccumulateAs::kF64);
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  // Two streams interleaved piece by piece, in any order.
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 2, Bytes(a).subspan(8), 1).ok());
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 0, Bytes(b).subspan(0, 8), 3).ok());
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 0, Bytes(a).subspan(0, 8), 1).ok());
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 2, Bytes(b).subspan(8), 3).ok());
  sum.CommitWeight(0, 1);
  sum.CommitWeight(0, 3);
  std::vector<double> mean(4);
  sum.MeanChunk(0, 0, mean);
  EXPECT_EQ(mean, (std::vector<double>{4, 5, 6, 7}));
}

TEST(StreamingSum, NegativeWeightRollsAContributionBack) {
  StreamingSum sum(Model(), AccumulateAs::kF64);
  const std::vector<float> a = {1, 2, 3, 4}, broken = {100, 200};
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 0, Bytes(a), 2).ok());
  sum.CommitWeight(0, 2);
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 0, Bytes(broken), 5).ok());
  ASSERT_TRUE(sum.AddElements(0, DType::kF32, 0, Bytes(broken), -5).ok());
  std::vector<double> mean(4);
  sum.MeanChunk(0, 0, mean);
  EXPECT_EQ(mean, (std::vector<double>{1, 2, 3, 4}));
}

TEST(StreamingSum, AcceptsOtherInputDtypesAndRejectsOutOfRangePieces) {
  StreamingSum sum(Model(), AccumulateAs::kF32);
  std::vector<uint16_t> half = {FloatToHalf(1.5f), FloatToHalf(-2.0f)};
  std::span<const uint8_t> hb(reinterpret_cast<const uint8_t*>(half.data()), 4);
  ASSERT_TRUE(sum.AddElements(0, DType::kF16, 1, hb, 2).ok());
  sum.CommitWeight(0, 2);
  std::vector<double> mean(2);
  sum.MeanChunk(0, 1, mean);
  EXPECT_EQ(mean, (std::vector<double>{1.5, -2.0}));
  EXPECT_FALSE(sum.AddElements(0, DType::kF16, 3, hb, 1).ok());
  EXPECT_FALSE(sum.AddElements(0, DType::kF32, 0, hb.subspan(0, 3), 1).ok());
  EXPECT_EQ(sum.IndexOf("n"), 1);
  EXPECT_EQ(sum.IndexOf("missing"), -1);
  EXPECT_EQ(sum.memory_bytes(), 4 * sizeof(float) + 2 * sizeof(double));
}

TEST(StreamingSum, ModelAccumulationFollowsEachTensorsOwnFloatType) {
  std::vector<TensorInfo> model = {{"f32", DType::kF32, {4}, 0, 16},
                                   {"f16", DType::kF16, {4}, 16, 24},
                                   {"bf16", DType::kBF16, {4}, 24, 32},
                                   {"f64", DType::kF64, {4}, 32, 64},
                                   {"i64", DType::kI64, {4}, 64, 96}};
  StreamingSum sum(model, AccumulateAs::kModel);
  // F32 accumulators for the three 32-bit-or-narrower floats, F64 for F64 and integers.
  EXPECT_EQ(sum.memory_bytes(), 3 * 4 * sizeof(float) + 2 * 4 * sizeof(double));
  EXPECT_TRUE(sum.Fits(model, AccumulateAs::kModel));
  EXPECT_FALSE(sum.Fits(model, AccumulateAs::kF64));
}

TEST(AccumulatesInF32, FollowsTheChoiceForFloatsAndKeepsIntegersInF64) {
  EXPECT_TRUE(AccumulatesInF32(AccumulateAs::kModel, DType::kF32));
  EXPECT_TRUE(AccumulatesInF32(AccumulateAs::kModel, DType::kBF16));
  EXPECT_FALSE(AccumulatesInF32(AccumulateAs::kModel, DType::kF64));
  EXPECT_TRUE(AccumulatesInF32(AccumulateAs::kF32, DType::kF64));
  EXPECT_FALSE(AccumulatesInF32(AccumulateAs::kF64, DType::kF16));
  EXPECT_FALSE(AccumulatesInF32(AccumulateAs::kF32, DType::kI32));
  EXPECT_FALSE(AccumulatesInF32(AccumulateAs::kModel, DType::kBool));
}

TEST(StreamingSum, ConcurrentStreamsFoldWithoutLosingUpdates) {
  std::vector<TensorInfo> model = {{"w", DType::kF32, {1000}, 0, 4000}};
  StreamingSum sum(model, AccumulateAs::kF64);
  std::vector<float> ones(10, 1.0f);
  std::vector<std::thread> streams;
  for (int t = 0; t < 4; ++t) {
    streams.emplace_back([&] {
      for (uint64_t first = 0; first < 1000; first += 10) {
        ASSERT_TRUE(sum.AddElements(0, DType::kF32, first, Bytes(ones), 1).ok());
      }
    });
  }
  for (auto& s : streams) s.join();
  sum.CommitWeight(0, 4);
  std::vector<double> mean(1000);
  sum.MeanChunk(0, 0, mean);
  for (double m : mean) ASSERT_EQ(m, 1.0);
}

}  // namespace
}  // namespace ember::tensor
