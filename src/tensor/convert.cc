#include "tensor/convert.h"

#include <algorithm>

#include "tensor/kernels.h"

namespace ember::tensor {

// Both directions use the element kernels the accumulators use (one contribution of
// weight 1), so there is one place that knows how to load and store each dtype.
std::vector<double> ToF64(const TensorView& view) {
  std::vector<double> out(view.num_elements());
  const size_t have = view.bytes.size() / DTypeSize(view.dtype);  // never read past the bytes
  if (!out.empty()) kernels::AddAs<double>(view.dtype, view.bytes.data(), std::min(out.size(), have), 1.0, out.data());
  return out;
}

std::vector<uint8_t> FromF64(std::span<const double> values, DType dtype) {
  std::vector<uint8_t> out(values.size() * DTypeSize(dtype));
  if (!values.empty()) kernels::StoreMeanAs(dtype, values.data(), values.size(), 1.0, out.data());
  return out;
}

}  // namespace ember::tensor
