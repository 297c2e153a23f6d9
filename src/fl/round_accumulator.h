// RoundAccumulator: FedAvg's in-time aggregation for one round. Each site's result is
// folded into one running weighted sum as its bytes arrive (a ResultFolder per result),
// so the server holds one accumulator per round and never a copy of any client's update
// (FLARE's WeightedAggregationHelper, done chunk by chunk in C++). The next global model
// is written to a file chunk by chunk.
//
//   RoundAccumulator acc(global, {.exclude_vars = "bn\\.", .journal_dir = ws});
//   EMBER_ASSIGN_OR_RETURN(auto folder, acc.Begin("site-1", body_size, /*weight=*/100, kFull));
//   ... folder->Write(chunk) as chunks arrive ...
//   EMBER_RETURN_IF_ERROR(acc.Commit(*folder, metrics));      // or folder->Cancel()
//   EMBER_ASSIGN_OR_RETURN(GlobalModel next, acc.Finish(ws + "/FL_global_model.safetensors"));
//
// Thread-safety: Begin/Commit and the folders may run concurrently from several threads;
// Finish runs after every folder is committed or cancelled.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>

#include "base/status.h"
#include "fl/global_model.h"
#include "fl/result_folder.h"
#include "tensor/streaming_sum.h"

namespace ember::fl {

enum class ParamsType { kFull, kDiff };
Result<ParamsType> ParseParamsType(const std::string& s);

// server.json's aggregation_accumulate: "model" (the default: each float tensor sums in its
// own precision, F64 only for F64 tensors, as FLARE does), "F32" or "F64" (every float
// tensor sums in that type).
Result<tensor::AccumulateAs> ParseAccumulateAs(const std::string& s);

// Hands one round's StreamingSum on to the next round, so its memory is reused (zeroed in
// place) instead of faulted in and zeroed by the kernel every round: at 1 GB that is a
// quarter of a million page faults per round. Keeps at most one spare, and only while no
// other sum is in use, so RSS never holds two.
//
// Thread-safety: thread-safe.
class SumPool {
 public:
  // A zeroed sum for `tensors`: the spare if it fits, else a new one.
  std::unique_ptr<tensor::StreamingSum> Take(const std::vector<tensor::TensorInfo>& tensors,
                                             tensor::AccumulateAs accumulate_as);
  // Returns a sum no longer used; kept as the spare unless another one is in use.
  void Give(std::unique_ptr<tensor::StreamingSum> sum);
  bool has_spare() const {
    std::lock_guard lock(mu_);
    return spare_ != nullptr;
  }

 private:
  mutable std::mutex mu_;
  std::unique_ptr<tensor::StreamingSum> spare_;  // guarded by mu_
  int in_use_ = 0;                               // guarded by mu_
};

struct AccumulatorOptions {
  std::string exclude_vars;                                     // regex; empty = none
  tensor::AccumulateAs accumulate_as = tensor::AccumulateAs::kModel;
  std::string journal_dir = "/tmp";                             // rollback journals
  bool journal = true;                                          // false: no rollback (ResultFolder)
  std::shared_ptr<SumPool> pool;                                // null: a new sum every round
};

class RoundAccumulator {
 public:
  RoundAccumulator(GlobalModel base, AccumulatorOptions options);
  ~RoundAccumulator();  // gives the sum back to the pool

  // Starts folding one result of `body_size` bytes. All results of a round must have the
  // same params type.
  Result<std::unique_ptr<ResultFolder>> Begin(const std::string& site, uint64_t body_size,
                                              double weight, ParamsType type);
  // Finishes `folder` (every byte arrived) and counts the result's metrics.
  Status Commit(ResultFolder& folder, double weight, const nlohmann::json& metrics);

  // A result could not be taken back (ResultFolder::Cancel failed): Finish returns `why`.
  void Poison(Status why);
  int num_results() const;
  // Weighted mean of each numeric metric every result reported (bools as 0/1).
  nlohmann::json AggregatedMetrics() const;
  // Writes the next global model to `path`: FULL → weighted mean; DIFF → base + weighted
  // mean; tensors excluded or absent from every result keep their base value.
  Result<GlobalModel> Finish(const std::string& path) const;

 private:
  Status WriteTensor(const tensor::TensorInfo& info, size_t index, class FileWriter& out) const;

  GlobalModel base_;
  AccumulatorOptions options_;
  std::optional<std::regex> exclude_;
  std::unique_ptr<tensor::StreamingSum> sum_;

  mutable std::mutex mu_;
  // Guarded by mu_.
  std::optional<ParamsType> type_;
  Status poisoned_;
  int num_results_ = 0;
  double total_weight_ = 0;
  std::map<std::string, double> metric_sums_;
  std::map<std::string, int> metric_counts_;
};

}  // namespace ember::fl
