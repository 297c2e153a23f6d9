#include "tensor/convert.h"

#include <cstring>

#include "tensor/aggregate.h"

namespace ember::tensor {

// Both directions reuse the weighted-sum kernels with a single contribution of weight 1,
// so there is one place that knows how to load and store each dtype.
std::vector<double> ToF64(const TensorView& view) {
  WeightedSum sum;
  std::vector<double> out(view.num_elements());
  if (out.empty() || !sum.Add("x", view, 1.0).ok()) return out;
  auto bytes = sum.Mean("x", DType::kF64);
  if (bytes.ok()) std::memcpy(out.data(), bytes->data(), bytes->size());
  return out;
}

std::vector<uint8_t> FromF64(std::span<const double> values, DType dtype) {
  if (values.empty()) return {};
  WeightedSum sum;
  std::span<const uint8_t> raw(reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes());
  TensorView view{DType::kF64, {static_cast<int64_t>(values.size())}, raw};
  if (!sum.Add("x", view, 1.0).ok()) return {};
  auto bytes = sum.Mean("x", dtype);
  return bytes.ok() ? std::move(bytes).value() : std::vector<uint8_t>{};
}

}  // namespace ember::tensor
