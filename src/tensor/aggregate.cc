#include "tensor/aggregate.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "tensor/kernels.h"

namespace ember::tensor {
namespace {

using kernels::AddAs;
using kernels::StoreMeanAs;

std::string Describe(DType dtype, const std::vector<int64_t>& shape) {
  return std::string(DTypeName(dtype)) + " " + ShapeToString(shape);
}

std::string TensorContext(const std::string& name) { return "tensor '" + name + "'"; }

Status CheckWeight(const std::string& name, double weight) {
  if (std::isfinite(weight) && weight >= 0) return Status::Ok();
  return Status::InvalidArgument(TensorContext(name) + ": weight " + std::to_string(weight) +
                                 " is not a finite number >= 0");
}

}  // namespace

bool AccumulatesInF32(AccumulateAs accumulate_as, DType dtype) {
  if (!IsFloatingPoint(dtype)) return false;
  switch (accumulate_as) {
    case AccumulateAs::kF32: return true;
    case AccumulateAs::kF64: return false;
    case AccumulateAs::kModel: return dtype != DType::kF64;
  }
  return false;
}

Status WeightedSum::Add(const std::string& name, const TensorView& x, double weight) {
  EMBER_RETURN_IF_ERROR(CheckWeight(name, weight));
  Result<TensorView> checked = TensorView::Make(x.dtype, x.shape, x.bytes);
  if (!checked.ok()) return checked.status().WithContext(TensorContext(name));
  EMBER_ASSIGN_OR_RETURN(Accumulator * acc, FindOrCreate(name, x.dtype, x.shape));
  return Accumulate(name, *acc, 0, x.bytes, weight);
}

Status WeightedSum::AddPiece(const TensorInfo& info, uint64_t offset_in_tensor,
                             std::span<const uint8_t> bytes, double weight) {
  EMBER_RETURN_IF_ERROR(CheckWeight(info.name, weight));
  EMBER_ASSIGN_OR_RETURN(Accumulator * acc, FindOrCreate(info.name, info.dtype, info.shape));
  return Accumulate(info.name, *acc, offset_in_tensor, bytes, weight);
}

double WeightedSum::total_weight(const std::string& name) const {
  auto it = sums_.find(name);
  return it == sums_.end() ? 0.0 : it->second.total_weight;
}

Result<std::vector<uint8_t>> WeightedSum::Mean(const std::string& name, DType out_dtype) const {
  auto it = sums_.find(name);
  if (it == sums_.end()) return Status::NotFound("no sum for " + TensorContext(name));
  const Accumulator& acc = it->second;
  if (acc.in_progress()) {
    return Status::FailedPrecondition(TensorContext(name) + ": contribution incomplete at byte " +
                                      std::to_string(acc.next_offset) + " of " +
                                      std::to_string(acc.nbytes));
  }
  if (acc.total_weight <= 0) {
    return Status::FailedPrecondition(TensorContext(name) + ": total weight is 0");
  }
  size_t count = acc.nbytes / DTypeSize(acc.dtype);
  std::vector<uint8_t> out(count * DTypeSize(out_dtype));
  if (!acc.sum32.empty()) {
    StoreMeanAs(out_dtype, acc.sum32.data(), count, acc.total_weight, out.data());
  } else {
    StoreMeanAs(out_dtype, acc.sum64.data(), count, acc.total_weight, out.data());
  }
  return out;
}

Result<TensorInfo> WeightedSum::Info(const std::string& name) const {
  auto it = sums_.find(name);
  if (it == sums_.end()) return Status::NotFound("no sum for " + TensorContext(name));
  return TensorInfo{name, it->second.dtype, it->second.shape};
}

std::vector<std::string> WeightedSum::names() const {
  std::vector<std::string> names;
  names.reserve(sums_.size());
  for (const auto& [name, acc] : sums_) names.push_back(name);
  return names;
}

Result<WeightedSum::Accumulator*> WeightedSum::FindOrCreate(const std::string& name, DType dtype,
                                                          const std::vector<int64_t>& shape) {
  auto it = sums_.find(name);
  if (it != sums_.end()) {
    const Accumulator& acc = it->second;
    if (acc.dtype == dtype && acc.shape == shape) return &it->second;
    return Status::InvalidArgument(TensorContext(name) + ": expected " +
                                   Describe(acc.dtype, acc.shape) + ", got " +
                                   Describe(dtype, shape));
  }
  Result<uint64_t> nbytes = CountBytes(dtype, shape);
  if (!nbytes.ok()) return nbytes.status().WithContext(TensorContext(name));
  Accumulator acc;
  acc.dtype = dtype;
  acc.shape = shape;
  acc.nbytes = *nbytes;
  size_t count = *nbytes / DTypeSize(dtype);
  bool narrow = AccumulatesInF32(accumulate_as_, dtype);
  if (narrow) {
    acc.sum32.resize(count);
  } else {
    acc.sum64.resize(count);
  }
  return &sums_.emplace(name, std::move(acc)).first->second;
}

Status WeightedSum::CheckOffset(const std::string& name, const Accumulator& acc, uint64_t offset,
                                size_t size) {
  if (offset == 0 && acc.in_progress()) {
    return Status::FailedPrecondition(
        TensorContext(name) +
        ": a new contribution started while the previous one stopped at byte " +
        std::to_string(acc.next_offset) + " of " + std::to_string(acc.nbytes));
  }
  if (offset != 0 && (!acc.in_progress() || offset != acc.next_offset)) {
    uint64_t expected = acc.in_progress() ? acc.next_offset : 0;
    return Status::FailedPrecondition(TensorContext(name) + ": piece at byte " +
                                      std::to_string(offset) + ", expected byte " +
                                      std::to_string(expected));
  }
  if (size > acc.nbytes - offset) {
    return Status::InvalidArgument(TensorContext(name) + ": piece of " + std::to_string(size) +
                                   " bytes at byte " + std::to_string(offset) + " exceeds its " +
                                   std::to_string(acc.nbytes) + " bytes");
  }
  return Status::Ok();
}

Status WeightedSum::Accumulate(const std::string& name, Accumulator& acc, uint64_t offset,
                               std::span<const uint8_t> bytes, double weight) {
  if (bytes.empty() && acc.nbytes > 0) return Status::Ok();  // carries nothing
  EMBER_RETURN_IF_ERROR(CheckOffset(name, acc, offset, bytes.size()));
  if (offset == 0) acc.total_weight += weight;
  acc.next_offset = offset + bytes.size();
  const size_t esize = DTypeSize(acc.dtype);
  uint64_t pos = offset;
  if (acc.partial_size > 0) {  // finish the element split by the previous piece
    size_t take = std::min(esize - acc.partial_size, bytes.size());
    std::memcpy(acc.partial.data() + acc.partial_size, bytes.data(), take);
    acc.partial_size += take;
    bytes = bytes.subspan(take);
    pos += take;
    if (acc.partial_size < esize) return Status::Ok();
    AddElements(acc, pos / esize - 1, acc.partial.data(), 1, weight);
    acc.partial_size = 0;
  }
  size_t whole = bytes.size() / esize;
  AddElements(acc, pos / esize, bytes.data(), whole, weight);
  acc.partial_size = bytes.size() - whole * esize;
  if (acc.partial_size > 0) {  // bytes.data() may be null when empty
    std::memcpy(acc.partial.data(), bytes.data() + whole * esize, acc.partial_size);
  }
  return Status::Ok();
}

void WeightedSum::AddElements(Accumulator& acc, uint64_t first, const uint8_t* src, size_t count,
                              double weight) {
  if (count == 0) return;
  if (!acc.sum32.empty()) {
    AddAs<float>(acc.dtype, src, count, float(weight), acc.sum32.data() + first);
  } else {
    AddAs<double>(acc.dtype, src, count, weight, acc.sum64.data() + first);
  }
}

}  // namespace ember::tensor
