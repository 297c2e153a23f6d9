#include "tensor/half.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "tensor/dtype.h"

namespace ember::tensor {
namespace {

TEST(DType, NamesRoundTripAndSizesMatchSafetensors) {
  const size_t kSizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};
  int i = 0;
  for (DType dtype : kAllDTypes) {
    Result<DType> parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << DTypeName(dtype);
    EXPECT_EQ(*parsed, dtype);
    EXPECT_EQ(DTypeSize(dtype), kSizes[i++]) << DTypeName(dtype);
  }
  EXPECT_EQ(DTypeName(DType::kBool), "BOOL");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
}

TEST(DType, UnknownNameIsAnErrorNamingIt) {
  Result<DType> parsed = ParseDType("F8_E4M3");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("'F8_E4M3'"), std::string::npos);
  EXPECT_FALSE(ParseDType("f32").ok());  // names are case-sensitive, as in safetensors
}

TEST(Half, NarrowsKnownValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(1.5f), 0x3E00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(0.1f), 0x2E66);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);    // largest finite
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);    // below the halfway point to 2^16
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);    // halfway: ties to even = inf
  EXPECT_EQ(FloatToHalf(0x1p-14f), 0x0400);    // smallest normal
  EXPECT_EQ(FloatToHalf(0x1p-24f), 0x0001);    // smallest subnormal
  EXPECT_EQ(FloatToHalf(0x1p-25f), 0x0000);    // tie between 0 and 2^-24: even
  EXPECT_EQ(FloatToHalf(0x1.8p-25f), 0x0001);  // above the tie
  EXPECT_EQ(FloatToHalf(0x1p-14f - 0x1p-25f), 0x0400);  // subnormal rounding up to normal
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), 0x3C00);      // tie: even mantissa
  EXPECT_EQ(FloatToHalf(1.0f + 0x3p-11f), 0x3C02);      // tie: odd mantissa rounds up
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::infinity()), 0xFC00);
  uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_EQ(DoubleToHalf(1e300), 0x7C00);
  EXPECT_EQ(DoubleToHalf(1e-300), 0x0000);
}

TEST(Half, WidensKnownValues) {
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(HalfToFloat(0x03FF), 1023 * 0x1p-24f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
  EXPECT_EQ(HalfToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(HalfToFloat(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(Half, EveryHalfSurvivesWideningAndNarrowing) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    float f = HalfToFloat(uint16_t(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f))));
    } else {
      ASSERT_EQ(FloatToHalf(f), bits) << std::hex << bits;
    }
  }
}

#ifdef __FLT16_MAX__
// The compiler's _Float16 conversions are correctly rounded; compare against them.
TEST(Half, NarrowingMatchesTheCompilersFloat16) {
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFu; bits += 4093) {
    float f = std::bit_cast<float>(uint32_t(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), std::bit_cast<uint16_t>(_Float16(f))) << f;
  }
  for (uint64_t bits = 0x3E00000000000000; bits < 0x4100000000000000; bits += 0x0000123456789AB) {
    double d = std::bit_cast<double>(bits);
    ASSERT_EQ(DoubleToHalf(d), std::bit_cast<uint16_t>(_Float16(d))) << d;
    ASSERT_EQ(DoubleToHalf(-d), std::bit_cast<uint16_t>(_Float16(-d))) << -d;
  }
}
#endif

TEST(BFloat16, ConvertsKnownValues) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBFloat16(3.14159265f), 0x4049);
  EXPECT_EQ(FloatToBFloat16(1.0f + 0x1p-8f), 0x3F80);  // tie: even
  EXPECT_EQ(FloatToBFloat16(1.0f + 0x3p-8f), 0x3F82);  // tie: odd rounds up
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to inf
  EXPECT_EQ(FloatToBFloat16(0x1p-133f), 0x0001);       // smallest subnormal
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);
  EXPECT_EQ(DoubleToBFloat16(1e40), 0x7F80);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
  EXPECT_EQ(BFloat16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xC049), -3.140625f);
}

TEST(BFloat16, DoubleIsRoundedOnceNotThroughFloat) {
  // Just above the tie between 0x3F80 and 0x3F81; a float in between would make it a tie.
  EXPECT_EQ(DoubleToBFloat16(1.0 + 0x1p-8 + 0x1p-40), 0x3F81);
}

TEST(BFloat16, NarrowingMatchesTheClassicBitTrick) {
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFu; bits += 4093) {
    uint32_t b = uint32_t(bits);
    if (std::isnan(std::bit_cast<float>(b))) continue;
    uint16_t expected = uint16_t((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
    ASSERT_EQ(FloatToBFloat16(std::bit_cast<float>(b)), expected) << std::hex << b;
  }
}

}  // namespace
}  // namespace ember::tensor
