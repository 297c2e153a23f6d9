// Tensor metadata and non-owning views over tensor bytes (little-endian, row-major, as
// stored in safetensors).
//
//   std::vector<float> w = {1, 2, 3, 4};
//   TensorView v = TensorView::Of(DType::kF32, {2, 2}, std::as_bytes(std::span(w)));
//   EMBER_ASSIGN_OR_RETURN(TensorView checked, TensorView::Make(DType::kF32, {2, 2}, bytes));
//
// Thread-safety: value types. A view does not own its bytes; whoever made it keeps them
// alive and unchanged while the view is used.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/dtype.h"

namespace ember::tensor {

// Product of the dims ([] -> 1, any 0 -> 0). InvalidArgument for a negative dim or a
// count that overflows 64 bits.
Result<uint64_t> CountElements(const std::vector<int64_t>& shape);

// numel * DTypeSize(dtype), with the same checks as CountElements plus byte overflow.
Result<uint64_t> CountBytes(DType dtype, const std::vector<int64_t>& shape);

// "[2, 3]"; used in error messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

// One entry of a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets in the data section, [begin, end)
  uint64_t end = 0;

  // REQUIRES: the shape passed CountBytes (true for every parsed header).
  uint64_t num_elements() const;
  uint64_t nbytes() const { return num_elements() * DTypeSize(dtype); }
};

struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;

  // Checks that bytes.size() matches dtype and shape.
  static Result<TensorView> Make(DType dtype, std::vector<int64_t> shape,
                                 std::span<const uint8_t> bytes);
  // Unchecked; REQUIRES: bytes.size() == CountBytes(dtype, shape).
  static TensorView Of(DType dtype, std::vector<int64_t> shape, std::span<const std::byte> bytes);

  // REQUIRES: the shape passed CountBytes.
  uint64_t num_elements() const;
};

}  // namespace ember::tensor
