#include "fl/round_accumulator.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace ember::fl {
namespace {

namespace fs = std::filesystem;
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

class RoundAccumulatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ember_acc_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "base.safetensors", std::ios::binary) << Image({{"w", {1, 1}}, {"frozen", {5}}});
  }
  void TearDown() override { fs::remove_all(dir_); }

  GlobalModel Base() { return GlobalModel::Open((dir_ / "base.safetensors").string()).value(); }
  AccumulatorOptions Opts(std::string exclude = "") {
    AccumulatorOptions o;
    o.exclude_vars = std::move(exclude);
    o.journal_dir = dir_.string();
    return o;
  }

  Status Add(RoundAccumulator& acc, const std::string& site, const std::string& body, double w,
             const nlohmann::json& metrics = {}, ParamsType type = ParamsType::kFull) {
    EMBER_ASSIGN_OR_RETURN(auto folder, acc.Begin(site, body.size(), w, type));
    EMBER_RETURN_IF_ERROR(folder->Write({reinterpret_cast<const uint8_t*>(body.data()), body.size()}));
    return acc.Commit(*folder, w, metrics.is_null() ? nlohmann::json::object() : metrics);
  }

  std::vector<float> Get(const GlobalModel& m, const std::string& name) {
    for (const auto& t : m.tensors()) {
      if (t.name != name) continue;
      std::vector<float> out(t.num_elements());
      EXPECT_TRUE(m.ReadTensor(t, 0, {reinterpret_cast<uint8_t*>(out.data()), out.size() * 4}).ok());
      return out;
    }
    ADD_FAILURE() << "no tensor " << name;
    return {};
  }
  std::string Next() { return (dir_ / "next.safetensors").string(); }
  fs::path dir_;
};

TEST_F(RoundAccumulatorTest, FullResultsGiveTheWeightedMean) {
  RoundAccumulator acc(Base(), Opts());
  ASSERT_TRUE(Add(acc, "site-1", Image({{"w", {1, 2}}, {"frozen", {0}}}), 1, {{"accuracy", 0.5}}).ok());
  ASSERT_TRUE(Add(acc, "site-2", Image({{"w", {4, 8}}, {"frozen", {3}}}), 2, {{"accuracy", 0.8}}).ok());
  GlobalModel next = acc.Finish(Next()).value();
  EXPECT_EQ(Get(next, "w"), (std::vector<float>{3, 6}));
  EXPECT_EQ(Get(next, "frozen"), (std::vector<float>{2}));
  EXPECT_NEAR(acc.AggregatedMetrics()["accuracy"].get<double>(), 0.7, 1e-12);
}

TEST_F(RoundAccumulatorTest, DiffResultsAreAddedToTheBase) {
  RoundAccumulator acc(Base(), Opts());
  ASSERT_TRUE(Add(acc, "site-1", Image({{"w", {1, 0}}}), 1, {}, ParamsType::kDiff).ok());
  ASSERT_TRUE(Add(acc, "site-2", Image({{"w", {3, 2}}}), 1, {}, ParamsType::kDiff).ok());
  GlobalModel next = acc.Finish(Next()).value();
  EXPECT_EQ(Get(next, "w"), (std::vector<float>{3, 2}));
  EXPECT_EQ(Get(next, "frozen"), (std::vector<float>{5}));  // absent from results
}

TEST_F(RoundAccumulatorTest, ExcludedTensorsKeepTheirGlobalValue) {
  RoundAccumulator acc(Base(), Opts("^froz"));
  ASSERT_TRUE(Add(acc, "site-1", Image({{"w", {3, 3}}, {"frozen", {100}}}), 1).ok());
  GlobalModel next = acc.Finish(Next()).value();
  EXPECT_EQ(Get(next, "w"), (std::vector<float>{3, 3}));
  EXPECT_EQ(Get(next, "frozen"), (std::vector<float>{5}));
}

TEST_F(RoundAccumulatorTest, RejectsAResultWithTheWrongShapeWithoutCountingIt) {
  RoundAccumulator acc(Base(), Opts());
  Status s = Add(acc, "site-1", Image({{"w", {1, 2, 3}}}), 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 'w' has shape [3]"), std::string::npos) << s.message();
  EXPECT_EQ(acc.num_results(), 0);
  EXPECT_FALSE(Add(acc, "site-1", "garbage!", 1).ok());
  EXPECT_FALSE(Add(acc, "site-1", Image({{"w", {1, 1}}}), 1, {}, ParamsType::kDiff).ok() &&
               Add(acc, "site-2", Image({{"w", {1, 1}}}), 1, {}, ParamsType::kFull).ok());
}

TEST_F(RoundAccumulatorTest, MetricsMissingFromSomeResultsAreNotAveraged) {
  RoundAccumulator acc(Base(), Opts());
  ASSERT_TRUE(Add(acc, "site-1", Image({{"w", {1, 1}}}), 1, {{"accuracy", 0.5}, {"loss", 1.0}}).ok());
  ASSERT_TRUE(Add(acc, "site-2", Image({{"w", {1, 1}}}), 1, {{"accuracy", 0.7}}).ok());
  auto m = acc.AggregatedMetrics();
  EXPECT_NEAR(m["accuracy"].get<double>(), 0.6, 1e-12);
  EXPECT_FALSE(m.contains("loss"));
}

TEST_F(RoundAccumulatorTest, ABaseFileReplacedOnDiskStillServesItsRound) {
  GlobalModel base = Base();
  std::ofstream(dir_ / "base.safetensors.new", std::ios::binary) << Image({{"w", {9, 9}}, {"frozen", {9}}});
  fs::rename(dir_ / "base.safetensors.new", dir_ / "base.safetensors");
  EXPECT_EQ(Get(base, "w"), (std::vector<float>{1, 1}));
}

TEST_F(RoundAccumulatorTest, ThePooledSumStartsEachRoundFromZero) {
  auto pool = std::make_shared<SumPool>();
  AccumulatorOptions o = Opts();
  o.pool = pool;
  {
    RoundAccumulator round0(Base(), o);
    ASSERT_TRUE(Add(round0, "site-1", Image({{"w", {100, 100}}, {"frozen", {7}}}), 1).ok());
    ASSERT_TRUE(round0.Finish(Next()).ok());
  }  // its sum goes back to the pool
  RoundAccumulator round1(Base(), o);
  ASSERT_TRUE(Add(round1, "site-1", Image({{"w", {2, 4}}, {"frozen", {1}}}), 1).ok());
  ASSERT_TRUE(Add(round1, "site-2", Image({{"w", {4, 8}}, {"frozen", {3}}}), 3).ok());
  auto next = round1.Finish(Next());
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(Get(*next, "w"), (std::vector<float>{3.5f, 7}));
  EXPECT_EQ(Get(*next, "frozen"), (std::vector<float>{2.5f}));
}

TEST_F(RoundAccumulatorTest, ADefaultRoundSumsAFloat32ModelInFloat32) {
  EXPECT_EQ(AccumulatorOptions{}.accumulate_as, tensor::AccumulateAs::kModel);
  auto pool = std::make_shared<SumPool>();
  AccumulatorOptions o = Opts();
  o.pool = pool;
  {
    RoundAccumulator round(Base(), o);
    ASSERT_TRUE(Add(round, "site-1", Image({{"w", {1, 2}}, {"frozen", {3}}}), 1).ok());
    ASSERT_TRUE(Add(round, "site-2", Image({{"w", {3, 4}}, {"frozen", {5}}}), 1).ok());
    auto next = round.Finish(Next());
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    EXPECT_EQ(Get(*next, "w"), (std::vector<float>{2, 3}));
  }
  ASSERT_TRUE(pool->has_spare());
  auto spare = pool->Take(Base().tensors(), tensor::AccumulateAs::kModel);
  EXPECT_EQ(spare->memory_bytes(), 3 * sizeof(float));  // one float per element, not a double
}

TEST(ParseAccumulateAs, AcceptsModelF32AndF64AndNamesTheChoicesOtherwise) {
  EXPECT_EQ(*ParseAccumulateAs("model"), tensor::AccumulateAs::kModel);
  EXPECT_EQ(*ParseAccumulateAs("F32"), tensor::AccumulateAs::kF32);
  EXPECT_EQ(*ParseAccumulateAs("F64"), tensor::AccumulateAs::kF64);
  auto bad = ParseAccumulateAs("F16");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "aggregation_accumulate must be model, F32 or F64, got 'F16'");
}

TEST(SumPool, KeepsNoSpareWhileAnotherSumIsInUse) {
  const std::vector<tensor::TensorInfo> t = {{"w", tensor::DType::kF32, {4}, 0, 16}};
  SumPool pool;
  auto a = pool.Take(t, tensor::AccumulateAs::kF32);
  auto b = pool.Take(t, tensor::AccumulateAs::kF32);  // a stale round still folding
  pool.Give(std::move(a));  // b is in use: a is freed, not kept
  EXPECT_FALSE(pool.has_spare());
  pool.Give(std::move(b));  // nothing in use: kept
  EXPECT_TRUE(pool.has_spare());
  tensor::StreamingSum* kept = nullptr;
  {
    auto d = pool.Take(t, tensor::AccumulateAs::kF32);
    kept = d.get();
    pool.Give(std::move(d));
  }
  auto e = pool.Take(t, tensor::AccumulateAs::kF32);
  EXPECT_EQ(e.get(), kept);                            // reused
  auto f = pool.Take(t, tensor::AccumulateAs::kF64);   // does not fit: a new one
  EXPECT_NE(f.get(), kept);
}

}  // namespace
}  // namespace ember::fl
