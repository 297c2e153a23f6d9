// StreamingSum: a round's weighted sums for results that arrive as streams, several at
// once and split anywhere. Unlike WeightedSum it has no notion of "one contribution at a
// time": callers add whole elements at any position, from any thread, and commit each
// contribution's weight when it is complete, or subtract what they added (rollback).
//
//   StreamingSum sum(global.tensors(), AccumulateAs::kF32);
//   sum.AddElements(i, DType::kF32, /*first=*/0, bytes, /*weight=*/10);   // from site-1's stream
//   sum.CommitWeight(i, 10);                                               // site-1 finished it
//   sum.StoreMeanChunk(i, /*first=*/0, DType::kF32, out);                  // sum / total weight
//
// Memory: one accumulator element (4 or 8 bytes) per model element, allocated up front.
// Thread-safety: AddElements/CommitWeight lock only the tensor they touch (one mutex per
// tensor), so streams folding different tensors never wait for each other. Reads
// (MeanChunk, total_weight) must not overlap writes to the same tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "tensor/aggregate.h"
#include "tensor/tensor.h"

namespace ember::tensor {

class StreamingSum {
 public:
  // One accumulator per tensor of `tensors` (the global model's, in its order). Floating-point
  // tensors accumulate as `accumulate_as` (kModel: F64 for F64 tensors, else F32); integer
  // and bool tensors always in F64.
  StreamingSum(const std::vector<TensorInfo>& tensors, AccumulateAs accumulate_as);

  size_t size() const { return tensors_.size(); }
  const TensorInfo& info(size_t index) const { return tensors_[index].info; }
  // Index of `name`, or -1.
  int64_t IndexOf(const std::string& name) const;

  // Adds weight * x[k] to element first + k for each whole element of `bytes` (dtype
  // `dtype`, which may differ from the tensor's). A negative weight subtracts.
  Status AddElements(size_t index, DType dtype, uint64_t first, std::span<const uint8_t> bytes,
                     double weight);
  // Adds `weight` to the tensor's total weight (once per complete contribution).
  void CommitWeight(size_t index, double weight);
  double total_weight(size_t index) const;
  // Writes (sum / total weight) of elements [first, first + out.size()) as F64.
  // REQUIRES: total_weight(index) > 0.
  void MeanChunk(size_t index, uint64_t first, std::span<double> out) const;
  // The same mean stored as `dtype` into `out` (dtype's size per element) in one pass.
  // REQUIRES: total_weight(index) > 0; out.size() a multiple of DTypeSize(dtype).
  void StoreMeanChunk(size_t index, uint64_t first, DType dtype, std::span<uint8_t> out) const;
  // Bytes held by the accumulators.
  uint64_t memory_bytes() const { return memory_bytes_; }
  // True if this sum was made for exactly `tensors` (names, dtypes, shapes, order) and
  // `accumulate_as`, so Reset() makes it as good as a new one.
  bool Fits(const std::vector<TensorInfo>& tensors, AccumulateAs accumulate_as) const;
  // Zeroes every sum and total weight: a new round in memory that is already mapped.
  // REQUIRES: nobody adds concurrently.
  void Reset();

 private:
  struct Slot {
    TensorInfo info;
    std::vector<float> sum32;     // exactly one of sum32 / sum64 is sized
    std::vector<double> sum64;
    double total_weight = 0;
    std::unique_ptr<std::mutex> mu = std::make_unique<std::mutex>();
  };
  AccumulateAs accumulate_as_;
  std::vector<Slot> tensors_;
  std::unordered_map<std::string, size_t> index_;
  uint64_t memory_bytes_ = 0;
};

}  // namespace ember::tensor
