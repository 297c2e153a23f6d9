#include "tensor/aggregate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tensor/half.h"
#include "tensor/safetensors_header.h"
#include "tensor/safetensors_stream.h"

namespace ember::tensor {
namespace {

template <typename T>
std::vector<uint8_t> Raw(const std::vector<T>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

template <typename T>
std::vector<T> As(const std::vector<uint8_t>& bytes) {
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

std::vector<uint16_t> Halves(const std::vector<float>& v, uint16_t (*narrow)(float)) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(narrow(f));
  return out;
}

TensorView View(DType dtype, std::vector<int64_t> shape, const std::vector<uint8_t>& bytes) {
  return TensorView{dtype, std::move(shape), bytes};
}

TEST(WeightedSum, MeanOfF32EqualsHandComputedValues) {
  for (AccumulateAs acc : {AccumulateAs::kF64, AccumulateAs::kF32}) {
    WeightedSum sum(acc);
    std::vector<uint8_t> a = Raw<float>({1, 2, 3}), b = Raw<float>({3, 4, 5});
    ASSERT_TRUE(sum.Add("w", View(DType::kF32, {3}, a), 1).ok());
    ASSERT_TRUE(sum.Add("w", View(DType::kF32, {3}, b), 3).ok());
    EXPECT_EQ(sum.total_weight("w"), 4);
    Result<std::vector<uint8_t>> mean = sum.Mean("w", DType::kF32);
    ASSERT_TRUE(mean.ok()) << mean.status().ToString();
    EXPECT_EQ(As<float>(*mean), (std::vector<float>{2.5f, 3.5f, 4.5f}));
    EXPECT_EQ(As<double>(*sum.Mean("w", DType::kF64)), (std::vector<double>{2.5, 3.5, 4.5}));
  }
}

TEST(WeightedSum, MeanOfF16AndBF16EqualsHandComputedValues) {
  struct Case { DType dtype; uint16_t (*narrow)(float); };
  for (Case c : {Case{DType::kF16, FloatToHalf}, Case{DType::kBF16, FloatToBFloat16}}) {
    WeightedSum sum;
    std::vector<uint8_t> a = Raw(Halves({1, -2, 0.5f, 8}, c.narrow));
    std::vector<uint8_t> b = Raw(Halves({2, -4, 1.5f, 0}, c.narrow));
    ASSERT_TRUE(sum.Add("h", View(c.dtype, {2, 2}, a), 1).ok());
    ASSERT_TRUE(sum.Add("h", View(c.dtype, {2, 2}, b), 1).ok());
    Result<std::vector<uint8_t>> mean = sum.Mean("h", c.dtype);
    ASSERT_TRUE(mean.ok());
    EXPECT_EQ(As<uint16_t>(*mean), Halves({1.5f, -3, 1, 4}, c.narrow)) << DTypeName(c.dtype);
    EXPECT_EQ(As<float>(*sum.Mean("h", DType::kF32)), (std::vector<float>{1.5f, -3, 1, 4}));
  }
}

TEST(WeightedSum, MeanOfI32RoundsToNearest) {
  WeightedSum sum;
  std::vector<uint8_t> a = Raw<int32_t>({1, 10, -3, 7}), b = Raw<int32_t>({2, 11, -4, 7});
  ASSERT_TRUE(sum.Add("n", View(DType::kI32, {4}, a), 2).ok());
  ASSERT_TRUE(sum.Add("n", View(DType::kI32, {4}, b), 2).ok());
  EXPECT_EQ(As<int32_t>(*sum.Mean("n", DType::kI32)), (std::vector<int32_t>{2, 11, -4, 7}));
  EXPECT_EQ(As<double>(*sum.Mean("n", DType::kF64)), (std::vector<double>{1.5, 10.5, -3.5, 7}));
}

TEST(WeightedSum, MeanToSmallIntegersSaturatesAndBoolThresholdsAtHalf) {
  WeightedSum sum;
  std::vector<uint8_t> x = Raw<int32_t>({300, -1000, 5});
  ASSERT_TRUE(sum.Add("x", View(DType::kI32, {3}, x), 1).ok());
  EXPECT_EQ(As<uint8_t>(*sum.Mean("x", DType::kU8)), (std::vector<uint8_t>{255, 0, 5}));
  EXPECT_EQ(As<int8_t>(*sum.Mean("x", DType::kI8)), (std::vector<int8_t>{127, -128, 5}));
  std::vector<uint8_t> t = {1, 0, 1, 0}, u = {1, 0, 0, 1};
  ASSERT_TRUE(sum.Add("b", View(DType::kBool, {4}, t), 1).ok());
  ASSERT_TRUE(sum.Add("b", View(DType::kBool, {4}, u), 1.5).ok());
  EXPECT_EQ(*sum.Mean("b", DType::kBool), (std::vector<uint8_t>{1, 0, 0, 1}));
}

TEST(WeightedSum, HandlesScalarsAndEmptyTensors) {
  WeightedSum sum;
  std::vector<uint8_t> s = Raw<double>({4}), empty;
  ASSERT_TRUE(sum.Add("s", View(DType::kF64, {}, s), 1).ok());
  ASSERT_TRUE(sum.Add("e", View(DType::kF32, {0, 3}, empty), 1).ok());
  EXPECT_EQ(As<double>(*sum.Mean("s", DType::kF64)), std::vector<double>{4});
  EXPECT_TRUE(sum.Mean("e", DType::kF32)->empty());
  EXPECT_EQ(sum.total_weight("e"), 1);
  EXPECT_EQ(sum.names(), (std::vector<std::string>{"e", "s"}));
  sum.Clear();
  EXPECT_TRUE(sum.names().empty());
}

TEST(WeightedSum, MismatchedShapeOrDTypeNamesTheTensor) {
  WeightedSum sum;
  std::vector<uint8_t> three = Raw<float>({1, 2, 3}), four = Raw<float>({1, 2, 3, 4});
  ASSERT_TRUE(sum.Add("w", View(DType::kF32, {3}, three), 1).ok());
  Status s = sum.Add("w", View(DType::kF32, {4}, four), 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "tensor 'w': expected F32 [3], got F32 [4]");
  s = sum.Add("w", View(DType::kI32, {3}, three), 1);
  EXPECT_EQ(s.message(), "tensor 'w': expected F32 [3], got I32 [3]");
  s = sum.Add("w", View(DType::kF32, {3}, four), 1);  // bytes do not match the shape
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.total_weight("w"), 1);
}

TEST(WeightedSum, RejectsBadWeightsAndUnknownNames) {
  WeightedSum sum;
  std::vector<uint8_t> x = Raw<float>({1});
  EXPECT_EQ(sum.Add("w", View(DType::kF32, {1}, x), -1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.Add("w", View(DType::kF32, {1}, x), std::nan("")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.Mean("nope", DType::kF32).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(sum.Add("z", View(DType::kF32, {1}, x), 0).ok());
  EXPECT_EQ(sum.Mean("z", DType::kF32).status().code(), StatusCode::kFailedPrecondition);
}

// Adds `bytes` as three pieces split at byte offsets i <= j.
Status AddInThreePieces(WeightedSum& sum, const TensorInfo& info, std::span<const uint8_t> bytes,
                        size_t i, size_t j, double weight) {
  EMBER_RETURN_IF_ERROR(sum.AddPiece(info, 0, bytes.first(i), weight));
  EMBER_RETURN_IF_ERROR(sum.AddPiece(info, i, bytes.subspan(i, j - i), weight));
  return sum.AddPiece(info, j, bytes.subspan(j), weight);
}

TEST(WeightedSum, PiecesSplitAnywhereGiveTheSameMeanAsWholeTensors) {
  std::vector<uint8_t> a = Raw<float>({1, 2, 3, 4, 5}), b = Raw<float>({5, 4, 3, 2, 1});
  TensorInfo info{"w", DType::kF32, {5}};
  WeightedSum whole;
  ASSERT_TRUE(whole.Add("w", View(DType::kF32, {5}, a), 1).ok());
  ASSERT_TRUE(whole.Add("w", View(DType::kF32, {5}, b), 3).ok());
  std::vector<uint8_t> expected = *whole.Mean("w", DType::kF32);
  for (size_t i = 0; i <= a.size(); ++i) {
    for (size_t j = i; j <= a.size(); ++j) {
      WeightedSum pieces;
      ASSERT_TRUE(AddInThreePieces(pieces, info, a, i, j, 1).ok()) << i << "," << j;
      ASSERT_TRUE(AddInThreePieces(pieces, info, b, j, j, 3).ok()) << i << "," << j;
      EXPECT_EQ(pieces.total_weight("w"), 4);
      EXPECT_EQ(*pieces.Mean("w", DType::kF32), expected) << i << "," << j;
    }
  }
}

TEST(WeightedSum, RejectsOutOfOrderAndInterleavedPieces) {
  WeightedSum sum;
  std::vector<uint8_t> x = Raw<float>({1, 2});
  TensorInfo info{"w", DType::kF32, {2}};
  ASSERT_TRUE(sum.AddPiece(info, 0, std::span(x).first(3), 1).ok());
  EXPECT_EQ(sum.AddPiece(info, 5, std::span(x).subspan(5), 1).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(sum.AddPiece(info, 0, x, 1).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sum.Mean("w", DType::kF32).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sum.AddPiece(info, 3, x, 1).code(), StatusCode::kInvalidArgument);  // past the end
  ASSERT_TRUE(sum.AddPiece(info, 3, std::span(x).subspan(3), 1).ok());
  EXPECT_EQ(As<float>(*sum.Mean("w", DType::kF32)), (std::vector<float>{1, 2}));
}

TEST(WeightedSum, StreamedImagesFedByteByByteAverageLikeWholeTensors) {
  std::vector<float> a = {1, 2, 3}, b = {3, 2, 7};
  std::vector<uint16_t> ha = Halves({0.5f, 1}, FloatToHalf), hb = Halves({1.5f, 2}, FloatToHalf);
  std::vector<TensorInfo> infos = {{"w", DType::kF32, {3}}, {"h", DType::kF16, {2}}};
  WeightedSum sum;
  for (auto [w, h, weight] : {std::tuple(&a, &ha, 1.0), std::tuple(&b, &hb, 1.0)}) {
    std::string header = EncodeSafetensorsHeader(infos, {});
    std::vector<uint8_t> image(header.begin(), header.end());
    for (uint8_t byte : Raw(*w)) image.push_back(byte);
    for (uint8_t byte : Raw(*h)) image.push_back(byte);
    SafetensorsStreamParser parser(image.size());
    parser.on_data = [&sum, weight](const TensorInfo& t, uint64_t off, std::span<const uint8_t> bytes) {
      return sum.AddPiece(t, off, bytes, weight);
    };
    for (uint8_t& byte : image) ASSERT_TRUE(parser.Feed({&byte, 1}).ok());
    ASSERT_TRUE(parser.done());
  }
  EXPECT_EQ(As<float>(*sum.Mean("w", DType::kF32)), (std::vector<float>{2, 2, 5}));
  EXPECT_EQ(As<uint16_t>(*sum.Mean("h", DType::kF16)), Halves({1, 1.5f}, FloatToHalf));
}

}  // namespace
}  // namespace ember::tensor
