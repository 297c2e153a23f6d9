// RoundAccumulator: FedAvg's in-time aggregation. Each site's result is folded into a
// running weighted sum the moment it arrives, so the server holds one accumulator per
// round, never one copy per client (FLARE's WeightedAggregationHelper, done in C++).
//
//   RoundAccumulator acc(global, opts);
//   EMBER_RETURN_IF_ERROR(acc.Add("site-1", body_bytes, /*weight=*/100, metrics));
//   EMBER_ASSIGN_OR_RETURN(GlobalModel next, acc.Finish(ParamsType::kFull));
//
// Thread-safety: not thread-safe; the server calls it under its aggregation mutex.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <regex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "fl/global_model.h"
#include "tensor/aggregate.h"

namespace ember::fl {

enum class ParamsType { kFull, kDiff };
Result<ParamsType> ParseParamsType(const std::string& s);

class RoundAccumulator {
 public:
  // `exclude_vars`: regex of tensor names that keep their global value (empty = none).
  RoundAccumulator(GlobalModel base, const std::string& exclude_vars);

  // Folds one result. The body must be a safetensors image. Bad input is rejected before
  // anything is folded in, so a rejected result never half-counts.
  Status Add(const std::string& site, std::span<const uint8_t> body, double weight,
             const nlohmann::json& metrics, ParamsType type);

  int num_results() const { return num_results_; }
  double total_weight() const { return total_weight_; }
  // Weighted mean of each numeric metric every result reported (bools as 0/1).
  nlohmann::json AggregatedMetrics() const;
  // The next global model: FULL → weighted mean; DIFF → base + weighted mean of diffs.
  // Tensors excluded or absent from every result keep their base value.
  Result<GlobalModel> Finish() const;

 private:
  Status Validate(const std::string& site, const tensor::SafetensorsView& view) const;
  bool Excluded(const std::string& name) const;
  // The tensor's next global value in its own dtype.
  Result<std::vector<uint8_t>> NewValue(const tensor::TensorInfo& info) const;

  GlobalModel base_;
  std::optional<std::regex> exclude_;
  tensor::WeightedSum sum_;
  std::optional<ParamsType> type_;
  int num_results_ = 0;
  double total_weight_ = 0;
  std::map<std::string, double> metric_sums_;
  std::map<std::string, int> metric_counts_;
};

}  // namespace ember::fl
