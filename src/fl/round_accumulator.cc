#include "fl/round_accumulator.h"

#include <cstring>

#include "fl/file_writer.h"
#include "tensor/convert.h"

namespace ember::fl {

using nlohmann::json;

namespace {
constexpr uint64_t kChunkElements = 1 << 18;  // 256 Ki elements per output chunk
}  // namespace

Result<ParamsType> ParseParamsType(const std::string& s) {
  if (s == "FULL") return ParamsType::kFull;
  if (s == "DIFF") return ParamsType::kDiff;
  return Status::InvalidArgument("params_type must be FULL or DIFF, got '" + s + "'");
}

Result<tensor::AccumulateAs> ParseAccumulateAs(const std::string& s) {
  if (s == "model") return tensor::AccumulateAs::kModel;
  if (s == "F32") return tensor::AccumulateAs::kF32;
  if (s == "F64") return tensor::AccumulateAs::kF64;
  return Status::InvalidArgument("aggregation_accumulate must be model, F32 or F64, got '" + s + "'");
}

RoundAccumulator::RoundAccumulator(GlobalModel base, AccumulatorOptions options)
    : base_(std::move(base)), options_(std::move(options)) {
  sum_ = options_.pool ? options_.pool->Take(base_.tensors(), options_.accumulate_as)
                       : std::make_unique<tensor::StreamingSum>(base_.tensors(), options_.accumulate_as);
  if (!options_.exclude_vars.empty()) exclude_.emplace(options_.exclude_vars);
}

RoundAccumulator::~RoundAccumulator() {
  if (options_.pool) options_.pool->Give(std::move(sum_));
}

std::unique_ptr<tensor::StreamingSum> SumPool::Take(const std::vector<tensor::TensorInfo>& tensors,
                                                    tensor::AccumulateAs accumulate_as) {
  std::unique_ptr<tensor::StreamingSum> sum;
  {
    std::lock_guard lock(mu_);
    ++in_use_;
    sum = std::move(spare_);
  }
  if (sum && sum->Fits(tensors, accumulate_as)) {
    sum->Reset();
    return sum;
  }
  sum.reset();  // before allocating the new one: never two at once
  return std::make_unique<tensor::StreamingSum>(tensors, accumulate_as);
}

void SumPool::Give(std::unique_ptr<tensor::StreamingSum> sum) {
  std::lock_guard lock(mu_);
  --in_use_;
  if (in_use_ == 0) spare_ = std::move(sum);
}

Result<std::unique_ptr<ResultFolder>> RoundAccumulator::Begin(const std::string& site, uint64_t body_size,
                                                              double weight, ParamsType type) {
  if (!(weight >= 0)) return Status::InvalidArgument("negative aggregation weight");
  {
    std::lock_guard lock(mu_);
    if (type_ && *type_ != type) return Status::InvalidArgument("mixes FULL and DIFF results in one round");
    type_ = type;
  }
  FoldOptions fo{.weight = weight, .exclude = exclude_ ? &*exclude_ : nullptr, .journal_dir = options_.journal_dir,
                 .journal = options_.journal, .site = site};
  return std::make_unique<ResultFolder>(*sum_, body_size, fo);
}

Status RoundAccumulator::Commit(ResultFolder& folder, double weight, const json& metrics) {
  EMBER_RETURN_IF_ERROR(folder.Finish());
  std::lock_guard lock(mu_);
  for (auto& [k, v] : metrics.items()) {
    if (!v.is_number() && !v.is_boolean()) continue;
    metric_sums_[k] += (v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>()) * weight;
    metric_counts_[k] += 1;
  }
  ++num_results_;
  total_weight_ += weight;
  return Status::Ok();
}

void RoundAccumulator::Poison(Status why) {
  std::lock_guard lock(mu_);
  if (poisoned_.ok()) poisoned_ = std::move(why);
}

int RoundAccumulator::num_results() const {
  std::lock_guard lock(mu_);
  return num_results_;
}

json RoundAccumulator::AggregatedMetrics() const {
  std::lock_guard lock(mu_);
  json out = json::object();
  if (total_weight_ <= 0) return out;
  for (const auto& [k, sum] : metric_sums_) {
    // Like FLARE: a metric is averaged only if every result reported it.
    if (metric_counts_.at(k) == num_results_) out[k] = sum / total_weight_;
  }
  return out;
}

Status RoundAccumulator::WriteTensor(const tensor::TensorInfo& info, size_t index, FileWriter& out) const {
  const uint64_t n = info.num_elements();
  const size_t esize = tensor::DTypeSize(info.dtype);
  const bool keep = (exclude_ && std::regex_search(info.name, *exclude_)) || sum_->total_weight(index) <= 0;
  std::vector<uint8_t> base(std::min(n, kChunkElements) * esize);
  std::vector<double> mean(type_ == ParamsType::kDiff ? std::min(n, kChunkElements) : 0);
  for (uint64_t first = 0; first < n; first += kChunkElements) {
    const uint64_t count = std::min(kChunkElements, n - first);
    std::span<uint8_t> raw(base.data(), count * esize);
    if (keep || type_ == ParamsType::kDiff) EMBER_RETURN_IF_ERROR(base_.ReadTensor(info, first * esize, raw));
    if (!keep && type_ == ParamsType::kFull) {
      sum_->StoreMeanChunk(index, first, info.dtype, raw);  // one pass, no F64 detour
    } else if (!keep) {                                    // DIFF: global + mean update
      std::span<double> m(mean.data(), count);
      sum_->MeanChunk(index, first, m);
      std::vector<double> b = tensor::ToF64({info.dtype, {static_cast<int64_t>(count)}, raw});
      for (uint64_t k = 0; k < count; ++k) m[k] += b[k];
      std::vector<uint8_t> stored = tensor::FromF64(m, info.dtype);
      std::memcpy(raw.data(), stored.data(), raw.size());
    }
    EMBER_RETURN_IF_ERROR(out.Append(raw));
  }
  return Status::Ok();
}

Result<GlobalModel> RoundAccumulator::Finish(const std::string& path) const {
  {
    std::lock_guard lock(mu_);
    if (!poisoned_.ok()) return poisoned_;
  }
  const auto& infos = base_.tensors();
  EMBER_ASSIGN_OR_RETURN(FileWriter out, FileWriter::Create(path));
  const std::string header = tensor::EncodeSafetensorsHeader(infos, base_.header().metadata);
  EMBER_RETURN_IF_ERROR(out.Append({reinterpret_cast<const uint8_t*>(header.data()), header.size()}));
  for (size_t i = 0; i < infos.size(); ++i) EMBER_RETURN_IF_ERROR(WriteTensor(infos[i], i, out));
  EMBER_RETURN_IF_ERROR(out.Commit());
  return GlobalModel::Open(path);
}

}  // namespace ember::fl
