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

struct AccumulatorOptions {
  std::string exclude_vars;                                     // regex; empty = none
  tensor::AccumulateAs accumulate_as = tensor::AccumulateAs::kF64;
  std::string journal_dir = "/tmp";                             // rollback journals
  bool journal = true;                                          // false: no rollback (ResultFolder)
};

class RoundAccumulator {
 public:
  RoundAccumulator(GlobalModel base, AccumulatorOptions options);

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
  tensor::StreamingSum sum_;

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
