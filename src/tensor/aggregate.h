// Weighted-sum kernels for federated averaging: sum_i w_i * x_i per tensor name, then
// the mean sum / sum_i w_i converted to any dtype. Inputs may come whole (Add) or as
// pieces streamed out of a SafetensorsStreamParser (AddPiece), split anywhere.
//
//   WeightedSum sum;                                     // accumulates in F64
//   EMBER_RETURN_IF_ERROR(sum.Add("w", site1_w, 10));    // weight = #examples
//   EMBER_RETURN_IF_ERROR(sum.Add("w", site2_w, 30));
//   EMBER_ASSIGN_OR_RETURN(std::vector<uint8_t> mean, sum.Mean("w", DType::kF32));
//
// Accumulators: floating-point inputs accumulate in F64, or in F32 with
// AccumulateAs::kF32 (half the memory, less precise), or as the input's own float type
// with AccumulateAs::kModel (F64 only for F64 inputs); integer and bool inputs always
// accumulate in F64. Means to integer dtypes round to nearest (ties away from zero) and
// saturate (NaN -> 0); to BOOL give 1 where the mean is >= 0.5. Weights must be finite
// and >= 0.
// Streaming: per name, one contribution at a time, its pieces in byte order without
// gaps; the piece at offset 0 starts a contribution and carries its weight. Bytes of an
// element split between pieces are buffered until the element is complete.
// Thread-safety: not thread-safe; one owner (e.g. the round's strand or one pool task).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/tensor.h"

namespace ember::tensor {

// The float type a sum of floating-point tensors accumulates in. kModel follows each
// tensor's own dtype as FLARE's numpy/torch sums do: F32 for F32/F16/BF16 tensors, F64 for
// F64 tensors. Integer and bool tensors accumulate in F64 whatever the choice.
enum class AccumulateAs { kF32, kF64, kModel };

// True if a tensor of `dtype` accumulates in F32 under `accumulate_as`.
bool AccumulatesInF32(AccumulateAs accumulate_as, DType dtype);

class WeightedSum {
 public:
  explicit WeightedSum(AccumulateAs accumulate_as = AccumulateAs::kF64)
      : accumulate_as_(accumulate_as) {}

  // Adds weight * x to the sum of `name`. The first contribution of a name fixes its
  // dtype and shape; a mismatch later is InvalidArgument "tensor 'w': expected F32 [2],
  // got F16 [3]".
  Status Add(const std::string& name, const TensorView& x, double weight);

  // Adds bytes [offset_in_tensor, offset_in_tensor + bytes.size()) of one contribution
  // to tensor info.name (see Streaming above). FailedPrecondition if pieces arrive out
  // of order or a new contribution starts before the previous one completed.
  Status AddPiece(const TensorInfo& info, uint64_t offset_in_tensor,
                  std::span<const uint8_t> bytes, double weight);

  // Sum of the weights of the contributions to `name` (0 if none).
  double total_weight(const std::string& name) const;

  // The weighted mean of `name` as `out_dtype` bytes. NotFound for an unknown name;
  // FailedPrecondition if the total weight is 0 or a contribution is incomplete.
  Result<std::vector<uint8_t>> Mean(const std::string& name, DType out_dtype) const;

  // Name, input dtype and shape of `name` (begin/end are 0).
  Result<TensorInfo> Info(const std::string& name) const;
  std::vector<std::string> names() const;

  // Forgets every tensor (and frees the accumulators).
  void Clear() { sums_.clear(); }

 private:
  struct Accumulator {
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;
    std::vector<double> sum64;  // exactly one of sum64 / sum32 is sized
    std::vector<float> sum32;
    double total_weight = 0;
    uint64_t next_offset = 0;  // bytes received of the current contribution
    std::array<uint8_t, 8> partial{};  // bytes of an element split between pieces
    size_t partial_size = 0;

    bool in_progress() const { return next_offset != 0 && next_offset < nbytes; }
  };

  Result<Accumulator*> FindOrCreate(const std::string& name, DType dtype,
                                    const std::vector<int64_t>& shape);
  Status Accumulate(const std::string& name, Accumulator& acc, uint64_t offset,
                    std::span<const uint8_t> bytes, double weight);
  static Status CheckOffset(const std::string& name, const Accumulator& acc, uint64_t offset,
                            size_t size);
  static void AddElements(Accumulator& acc, uint64_t first, const uint8_t* src, size_t count,
                          double weight);

  AccumulateAs accumulate_as_;
  std::map<std::string, Accumulator> sums_;
};

}  // namespace ember::tensor
