#include "tensor/tensor.h"

namespace ember::tensor {

Result<uint64_t> CountElements(const std::vector<int64_t>& shape) {
  uint64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return Status::InvalidArgument("shape " + ShapeToString(shape) + " has a negative dim");
    }
    if (__builtin_mul_overflow(count, uint64_t(dim), &count)) {
      return Status::InvalidArgument("shape " + ShapeToString(shape) +
                                     " has more than 2^64 elements");
    }
  }
  return count;
}

Result<uint64_t> CountBytes(DType dtype, const std::vector<int64_t>& shape) {
  EMBER_ASSIGN_OR_RETURN(uint64_t count, CountElements(shape));
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, uint64_t(DTypeSize(dtype)), &bytes)) {
    return Status::InvalidArgument("shape " + ShapeToString(shape) + " of " +
                                   std::string(DTypeName(dtype)) + " exceeds 2^64 bytes");
  }
  return bytes;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

uint64_t TensorInfo::num_elements() const {
  uint64_t count = 1;
  for (int64_t dim : shape) count *= uint64_t(dim);
  return count;
}

Result<TensorView> TensorView::Make(DType dtype, std::vector<int64_t> shape,
                                    std::span<const uint8_t> bytes) {
  EMBER_ASSIGN_OR_RETURN(uint64_t expected, CountBytes(dtype, shape));
  if (bytes.size() != expected) {
    return Status::InvalidArgument(
        std::string(DTypeName(dtype)) + " tensor of shape " + ShapeToString(shape) + " needs " +
        std::to_string(expected) + " bytes, got " + std::to_string(bytes.size()));
  }
  return TensorView{dtype, std::move(shape), bytes};
}

TensorView TensorView::Of(DType dtype, std::vector<int64_t> shape,
                          std::span<const std::byte> bytes) {
  auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  return TensorView{dtype, std::move(shape), {data, bytes.size()}};
}

uint64_t TensorView::num_elements() const {
  uint64_t count = 1;
  for (int64_t dim : shape) count *= uint64_t(dim);
  return count;
}

}  // namespace ember::tensor
