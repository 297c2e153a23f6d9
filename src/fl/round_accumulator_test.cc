#include "fl/round_accumulator.h"

#include <gtest/gtest.h>

#include <cstring>

namespace ember::fl {
namespace {

using Floats = std::map<std::string, std::vector<float>>;

// A safetensors image of F32 tensors; shapes are 1-D of the vector's length.
std::string Image(const Floats& tensors) {
  std::vector<tensor::TensorInfo> infos;
  std::string data;
  for (const auto& [name, v] : tensors) {
    infos.push_back({name, tensor::DType::kF32, {static_cast<int64_t>(v.size())}, 0, 0});
    data.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }
  return tensor::EncodeSafetensorsHeader(infos, {}) + data;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<float> Get(const GlobalModel& m, const std::string& name) {
  auto v = m.view().Find(name);
  EXPECT_TRUE(v.ok()) << name;
  std::vector<float> out(v->bytes.size() / sizeof(float));
  std::memcpy(out.data(), v->bytes.data(), v->bytes.size());
  return out;
}

GlobalModel Base() { return GlobalModel::FromBytes(Image({{"w", {1, 1}}, {"frozen", {5}}})).value(); }

TEST(RoundAccumulator, FullResultsGiveTheWeightedMean) {
  RoundAccumulator acc(Base(), "");
  const std::string a = Image({{"w", {1, 2}}, {"frozen", {0}}});
  const std::string b = Image({{"w", {4, 8}}, {"frozen", {3}}});
  ASSERT_TRUE(acc.Add("site-1", Bytes(a), 1, {{"accuracy", 0.5}}, ParamsType::kFull).ok());
  ASSERT_TRUE(acc.Add("site-2", Bytes(b), 2, {{"accuracy", 0.8}}, ParamsType::kFull).ok());
  GlobalModel next = acc.Finish().value();
  EXPECT_EQ(Get(next, "w"), (std::vector<float>{3, 6}));
  EXPECT_EQ(Get(next, "frozen"), (std::vector<float>{2}));
  EXPECT_NEAR(acc.AggregatedMetrics()["accuracy"].get<double>(), 0.7, 1e-12);
}

TEST(RoundAccumulator, DiffResultsAreAddedToTheBase) {
  RoundAccumulator acc(Base(), "");
  const std::string a = Image({{"w", {1, 0}}});
  const std::string b = Image({{"w", {3, 2}}});
  ASSERT_TRUE(acc.Add("site-1", Bytes(a), 1, {}, ParamsType::kDiff).ok());
  ASSERT_TRUE(acc.Add("site-2", Bytes(b), 1, {}, ParamsType::kDiff).ok());
  GlobalModel next = acc.Finish().value();
  EXPECT_EQ(Get(next, "w"), (std::vector<float>{3, 2}));
  EXPECT_EQ(Get(next, "frozen"), (std::vector<float>{5}));  // absent from results
}

TEST(RoundAccumulator, ExcludedTensorsKeepTheirGlobalValue) {
  RoundAccumulator acc(Base(), "^froz");
  const std::string a = Image({{"w", {3, 3}}, {"frozen", {100}}});
  ASSERT_TRUE(acc.Add("site-1", Bytes(a), 1, {}, ParamsType::kFull).ok());
  GlobalModel next = acc.Finish().value();
  EXPECT_EQ(Get(next, "w"), (std::vector<float>{3, 3}));
  EXPECT_EQ(Get(next, "frozen"), (std::vector<float>{5}));
}

TEST(RoundAccumulator, RejectsAResultWithTheWrongShapeWithoutCountingIt) {
  RoundAccumulator acc(Base(), "");
  const std::string bad = Image({{"w", {1, 2, 3}}});
  Status s = acc.Add("site-1", Bytes(bad), 1, {}, ParamsType::kFull);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 'w' has shape [3]"), std::string::npos) << s.message();
  EXPECT_EQ(acc.num_results(), 0);
  EXPECT_FALSE(acc.Add("site-1", Bytes("garbage"), 1, {}, ParamsType::kFull).ok());
}

TEST(RoundAccumulator, MetricsMissingFromSomeResultsAreNotAveraged) {
  RoundAccumulator acc(Base(), "");
  const std::string a = Image({{"w", {1, 1}}});
  ASSERT_TRUE(acc.Add("site-1", Bytes(a), 1, {{"accuracy", 0.5}, {"loss", 1.0}}, ParamsType::kFull).ok());
  ASSERT_TRUE(acc.Add("site-2", Bytes(a), 1, {{"accuracy", 0.7}}, ParamsType::kFull).ok());
  auto m = acc.AggregatedMetrics();
  EXPECT_NEAR(m["accuracy"].get<double>(), 0.6, 1e-12);
  EXPECT_FALSE(m.contains("loss"));
}

}  // namespace
}  // namespace ember::fl
