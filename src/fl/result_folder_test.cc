#include "fl/result_folder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

namespace ember::fl {
namespace {

using Floats = std::map<std::string, std::vector<float>>;

std::string Image(const Floats& tensors) {
  std::vector<tensor::TensorInfo> infos;
  std::string data;
  for (const auto& [name, v] : tensors) {
    infos.push_back({name, tensor::DType::kF32, {static_cast<int64_t>(v.size())}, 0, 0});
    data.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }
  return tensor::EncodeSafetensorsHeader(infos, {}) + data;
}

std::span<const uint8_t> Bytes(const std::string& s, size_t from, size_t n) {
  return {reinterpret_cast<const uint8_t*>(s.data()) + from, std::min(n, s.size() - from)};
}

class ResultFolderTest : public ::testing::Test {
 protected:
  std::vector<tensor::TensorInfo> model_ = {{"a", tensor::DType::kF32, {3}, 0, 12},
                                            {"b", tensor::DType::kF32, {2}, 12, 20}};
  tensor::StreamingSum sum_{model_, tensor::AccumulateAs::kF64};
  FoldOptions Opts(double w, const std::string& site) {
    return {.weight = w, .journal_dir = std::filesystem::temp_directory_path().string(), .site = site};
  }
  std::vector<double> Mean(size_t i, size_t n) {
    std::vector<double> out(n);
    sum_.MeanChunk(i, 0, out);
    return out;
  }
};

TEST_F(ResultFolderTest, InterleavedStreamsSplitAnywhereGiveTheWeightedMean) {
  const std::string x = Image({{"a", {1, 2, 3}}, {"b", {10, 20}}});
  const std::string y = Image({{"a", {4, 5, 6}}, {"b", {40, 50}}});
  ResultFolder fx(sum_, x.size(), Opts(1, "site-1"));
  ResultFolder fy(sum_, y.size(), Opts(2, "site-2"));
  for (size_t off = 0; off < std::max(x.size(), y.size()); off += 3) {  // 3 splits elements
    if (off < x.size()) {
      ASSERT_TRUE(fx.Write(Bytes(x, off, 3)).ok());
    }
    if (off < y.size()) {
      ASSERT_TRUE(fy.Write(Bytes(y, off, 3)).ok());
    }
  }
  ASSERT_TRUE(fx.Finish().ok());
  ASSERT_TRUE(fy.Finish().ok());
  EXPECT_EQ(Mean(0, 3), (std::vector<double>{3, 4, 5}));
  EXPECT_EQ(Mean(1, 2), (std::vector<double>{30, 40}));
}

TEST_F(ResultFolderTest, ABrokenUploadIsRolledBackExactly) {
  const std::string x = Image({{"a", {1, 2, 3}}, {"b", {10, 20}}});
  const std::string bad = Image({{"a", {1e6f, 3.3f, -7.1f}}, {"b", {123.4f, 5}}});
  ResultFolder fx(sum_, x.size(), Opts(1, "site-1"));
  ASSERT_TRUE(fx.Write(Bytes(x, 0, x.size())).ok());
  ASSERT_TRUE(fx.Finish().ok());
  {
    ResultFolder broken(sum_, bad.size(), Opts(7, "site-2"));
    ASSERT_TRUE(broken.Write(Bytes(bad, 0, bad.size() - 6)).ok());  // breaks off inside 'b'
    ASSERT_TRUE(broken.Cancel().ok());
    EXPECT_FALSE(broken.Finish().ok());
  }
  EXPECT_EQ(Mean(0, 3), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(Mean(1, 2), (std::vector<double>{10, 20}));
  EXPECT_EQ(sum_.total_weight(0), 1.0);
}

TEST_F(ResultFolderTest, AWrongShapeIsRefusedBeforeAnythingIsFolded) {
  const std::string bad = Image({{"a", {1, 2}}, {"b", {10, 20}}});
  ResultFolder f(sum_, bad.size(), Opts(1, "site-1"));
  Status s = f.Write(Bytes(bad, 0, bad.size()));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tensor 'a' has shape [2]"), std::string::npos) << s.message();
  EXPECT_TRUE(f.Cancel().ok());
  EXPECT_EQ(sum_.total_weight(0), 0.0);
  const std::string good = Image({{"a", {2, 2, 2}}, {"b", {1, 1}}});
  ResultFolder g(sum_, good.size(), Opts(1, "site-2"));
  ASSERT_TRUE(g.Write(Bytes(good, 0, good.size())).ok());
  ASSERT_TRUE(g.Finish().ok());
  EXPECT_EQ(Mean(0, 3), (std::vector<double>{2, 2, 2}));
}

TEST_F(ResultFolderTest, WithoutAJournalABrokenUploadThatFoldedDataPoisonsTheSum) {
  const std::string x = Image({{"a", {1, 2, 3}}, {"b", {10, 20}}});
  FoldOptions no_journal = Opts(1, "site-1");
  no_journal.journal = false;
  ResultFolder header_only(sum_, x.size(), no_journal);
  ASSERT_TRUE(header_only.Write(Bytes(x, 0, x.size() - 20)).ok());  // no tensor data yet
  EXPECT_TRUE(header_only.Cancel().ok());                            // nothing to take back
  ResultFolder f(sum_, x.size(), no_journal);
  ASSERT_TRUE(f.Write(Bytes(x, 0, x.size() - 6)).ok());
  Status s = f.Cancel();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("no rollback journal"), std::string::npos) << s.message();
}

TEST_F(ResultFolderTest, FinishBeforeEveryByteArrivedIsDataLoss) {
  const std::string x = Image({{"a", {1, 2, 3}}, {"b", {10, 20}}});
  ResultFolder f(sum_, x.size(), Opts(1, "site-1"));
  ASSERT_TRUE(f.Write(Bytes(x, 0, x.size() - 1)).ok());
  EXPECT_EQ(f.Finish().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ember::fl
