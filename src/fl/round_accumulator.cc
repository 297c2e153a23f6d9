#include "fl/round_accumulator.h"

#include <cstring>

#include "tensor/convert.h"

namespace ember::fl {

using nlohmann::json;

Result<ParamsType> ParseParamsType(const std::string& s) {
  if (s == "FULL") return ParamsType::kFull;
  if (s == "DIFF") return ParamsType::kDiff;
  return Status::InvalidArgument("params_type must be FULL or DIFF, got '" + s + "'");
}

RoundAccumulator::RoundAccumulator(GlobalModel base, const std::string& exclude_vars)
    : base_(std::move(base)) {
  if (!exclude_vars.empty()) exclude_.emplace(exclude_vars);
}

bool RoundAccumulator::Excluded(const std::string& name) const {
  return exclude_ && std::regex_search(name, *exclude_);
}

Status RoundAccumulator::Validate(const std::string& site, const tensor::SafetensorsView& view) const {
  for (const auto& t : view.tensors()) {
    if (Excluded(t.name)) continue;
    auto g = base_.view().Find(t.name);
    if (!g.ok()) {
      return Status::InvalidArgument("tensor '" + t.name + "' is not in the global model");
    }
    if (g->shape != t.shape) {
      return Status::InvalidArgument("tensor '" + t.name + "' has shape " + tensor::ShapeToString(t.shape) +
                                     ", the global model has " + tensor::ShapeToString(g->shape));
    }
  }
  return Status::Ok();
}

Status RoundAccumulator::Add(const std::string& site, std::span<const uint8_t> body, double weight,
                             const json& metrics, ParamsType type) {
  if (type_ && *type_ != type) {
    return Status::InvalidArgument("mixes FULL and DIFF results in one round");
  }
  if (weight < 0) return Status::InvalidArgument("negative aggregation weight");
  EMBER_ASSIGN_OR_RETURN(tensor::SafetensorsView view, tensor::SafetensorsView::Parse(body));
  EMBER_RETURN_IF_ERROR(Validate(site, view));
  type_ = type;
  for (const auto& t : view.tensors()) {
    if (Excluded(t.name)) continue;
    EMBER_RETURN_IF_ERROR(sum_.Add(t.name, view.View(t), weight));
  }
  for (auto& [k, v] : metrics.items()) {
    if (!v.is_number() && !v.is_boolean()) continue;
    metric_sums_[k] += (v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>()) * weight;
    metric_counts_[k] += 1;
  }
  ++num_results_;
  total_weight_ += weight;
  return Status::Ok();
}

json RoundAccumulator::AggregatedMetrics() const {
  json out = json::object();
  if (total_weight_ <= 0) return out;
  for (const auto& [k, sum] : metric_sums_) {
    // Like FLARE: a metric is averaged only if every result reported it.
    if (metric_counts_.at(k) == num_results_) out[k] = sum / total_weight_;
  }
  return out;
}

Result<std::vector<uint8_t>> RoundAccumulator::NewValue(const tensor::TensorInfo& info) const {
  const tensor::TensorView old = base_.view().View(info);
  if (Excluded(info.name) || sum_.total_weight(info.name) <= 0) {
    return std::vector<uint8_t>(old.bytes.begin(), old.bytes.end());
  }
  if (type_ == ParamsType::kFull) return sum_.Mean(info.name, info.dtype);
  EMBER_ASSIGN_OR_RETURN(std::vector<uint8_t> mean_bytes, sum_.Mean(info.name, tensor::DType::kF64));
  std::vector<double> next = tensor::ToF64(old);
  const double* mean = reinterpret_cast<const double*>(mean_bytes.data());
  for (size_t k = 0; k < next.size(); ++k) next[k] += mean[k];
  return tensor::FromF64(next, info.dtype);
}

Result<GlobalModel> RoundAccumulator::Finish() const {
  const auto& infos = base_.view().tensors();
  std::string image = tensor::EncodeSafetensorsHeader(infos, base_.view().metadata());
  image.reserve(base_.size());
  for (const auto& info : infos) {
    EMBER_ASSIGN_OR_RETURN(std::vector<uint8_t> value, NewValue(info));
    image.append(reinterpret_cast<const char*>(value.data()), value.size());
  }
  return GlobalModel::FromBytes(std::move(image));
}

}  // namespace ember::fl
