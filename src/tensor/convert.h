// Whole-tensor dtype conversion through F64, for element-wise arithmetic that the
// weighted-sum kernels do not cover (e.g. FedAvg's DIFF update: global + mean diff).
//
//   std::vector<double> x = ToF64(view);
//   for (double& v : x) v += 1;
//   std::vector<uint8_t> bytes = FromF64(x, DType::kBF16);
//
// Conversions follow WeightedSum::Mean: floats round to nearest-even, integers round
// half away from zero and saturate, BOOL is v >= 0.5. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tensor/tensor.h"

namespace ember::tensor {

std::vector<double> ToF64(const TensorView& view);
std::vector<uint8_t> FromF64(std::span<const double> values, DType dtype);

}  // namespace ember::tensor
