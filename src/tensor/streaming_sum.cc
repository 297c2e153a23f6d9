#include "tensor/streaming_sum.h"

#include <algorithm>

#include "tensor/kernels.h"

namespace ember::tensor {

StreamingSum::StreamingSum(const std::vector<TensorInfo>& tensors, AccumulateAs accumulate_as)
    : accumulate_as_(accumulate_as) {
  tensors_.reserve(tensors.size());
  for (const auto& info : tensors) {
    Slot slot;
    slot.info = info;
    const uint64_t n = info.num_elements();
    if (AccumulatesInF32(accumulate_as, info.dtype)) {
      slot.sum32.resize(n);
      memory_bytes_ += n * sizeof(float);
    } else {
      slot.sum64.resize(n);
      memory_bytes_ += n * sizeof(double);
    }
    index_[info.name] = tensors_.size();
    tensors_.push_back(std::move(slot));
  }
}

bool StreamingSum::Fits(const std::vector<TensorInfo>& tensors, AccumulateAs accumulate_as) const {
  if (accumulate_as != accumulate_as_ || tensors.size() != tensors_.size()) return false;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& a = tensors[i];
    const TensorInfo& b = tensors_[i].info;
    if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape) return false;
  }
  return true;
}

void StreamingSum::Reset() {
  for (Slot& slot : tensors_) {
    std::lock_guard lock(*slot.mu);
    std::fill(slot.sum32.begin(), slot.sum32.end(), 0.0f);
    std::fill(slot.sum64.begin(), slot.sum64.end(), 0.0);
    slot.total_weight = 0;
  }
}

int64_t StreamingSum::IndexOf(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : static_cast<int64_t>(it->second);
}

Status StreamingSum::AddElements(size_t index, DType dtype, uint64_t first, std::span<const uint8_t> bytes,
                                 double weight) {
  Slot& slot = tensors_.at(index);
  const size_t esize = DTypeSize(dtype);
  const uint64_t count = bytes.size() / esize;
  if (bytes.size() % esize != 0 || first + count > slot.info.num_elements()) {
    return Status::InvalidArgument("tensor '" + slot.info.name + "': " + std::to_string(bytes.size()) +
                                   " bytes at element " + std::to_string(first) + " do not fit its " +
                                   std::to_string(slot.info.num_elements()) + " elements");
  }
  if (count == 0) return Status::Ok();
  std::lock_guard lock(*slot.mu);
  if (!slot.sum32.empty()) {
    kernels::AddAs<float>(dtype, bytes.data(), count, float(weight), slot.sum32.data() + first);
  } else {
    kernels::AddAs<double>(dtype, bytes.data(), count, weight, slot.sum64.data() + first);
  }
  return Status::Ok();
}

void StreamingSum::CommitWeight(size_t index, double weight) {
  Slot& slot = tensors_.at(index);
  std::lock_guard lock(*slot.mu);
  slot.total_weight += weight;
}

double StreamingSum::total_weight(size_t index) const {
  const Slot& slot = tensors_.at(index);
  std::lock_guard lock(*slot.mu);
  return slot.total_weight;
}

void StreamingSum::MeanChunk(size_t index, uint64_t first, std::span<double> out) const {
  const Slot& slot = tensors_.at(index);
  std::lock_guard lock(*slot.mu);
  const double w = slot.total_weight;
  for (size_t k = 0; k < out.size(); ++k) {
    out[k] = (slot.sum32.empty() ? slot.sum64[first + k] : double(slot.sum32[first + k])) / w;
  }
}

void StreamingSum::StoreMeanChunk(size_t index, uint64_t first, DType dtype, std::span<uint8_t> out) const {
  const Slot& slot = tensors_.at(index);
  std::lock_guard lock(*slot.mu);
  const size_t count = out.size() / DTypeSize(dtype);
  if (slot.sum32.empty()) {
    kernels::StoreMeanAs(dtype, slot.sum64.data() + first, count, slot.total_weight, out.data());
  } else {
    kernels::StoreMeanAs(dtype, slot.sum32.data() + first, count, slot.total_weight, out.data());
  }
}

}  // namespace ember::tensor
