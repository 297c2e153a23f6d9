#include "tensor/convert.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tensor/half.h"

namespace ember::tensor {
namespace {

TEST(Convert, RoundTripsThroughF64ForEveryDtype) {
  const std::vector<double> values = {0, 1, -2, 3.5, 100};
  for (DType dtype : kAllDTypes) {
    if (dtype == DType::kU8 || dtype == DType::kBool) continue;  // no negatives
    std::vector<uint8_t> bytes = FromF64(values, dtype);
    ASSERT_EQ(bytes.size(), values.size() * DTypeSize(dtype)) << DTypeName(dtype);
    TensorView view{dtype, {5}, bytes};
    std::vector<double> back = ToF64(view);
    const bool integral = !IsFloatingPoint(dtype);
    EXPECT_DOUBLE_EQ(back[3], integral ? 4.0 : 3.5) << DTypeName(dtype);
    EXPECT_DOUBLE_EQ(back[2], -2.0) << DTypeName(dtype);
  }
}

TEST(Convert, EmptyTensorsGiveEmptyVectors) {
  EXPECT_TRUE(FromF64({}, DType::kF32).empty());
  EXPECT_TRUE(ToF64(TensorView{DType::kF32, {0}, {}}).empty());
}

}  // namespace
}  // namespace ember::tensor
