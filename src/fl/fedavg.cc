#include "fl/fedavg.h"

#include <chrono>
#include <cmath>
#include <mutex>

#include "base/memory.h"
#include "base/progress.h"
#include "fl/round_accumulator.h"

namespace ember::fl {

using nlohmann::json;

namespace {

std::string FormatMetrics(const json& metrics) {
  std::string out;
  for (auto& [k, v] : metrics.items()) {
    if (!v.is_number()) continue;
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %s=%.4f", k.c_str(), v.get<double>());
    out += buf;
  }
  return out;
}

// " (excluded: site-3: disconnected ...; site-4: ...)", or "" when nobody was.
std::string FormatExcluded(const std::map<std::string, std::string>& excluded) {
  std::string out;
  for (const auto& [site, why] : excluded) out += (out.empty() ? " (excluded: " : "; ") + site + ": " + why;
  return out.empty() ? out : out + ")";
}

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// What the round's results add up to, filled by the consumers on worker threads.
struct SharedSummary {
  std::mutex mu;
  std::vector<std::string> sites;
  double num_steps = 0;
  uint64_t bytes_in = 0;
};

// Streams one site's result into the round: folds chunks as they arrive, commits on Finish.
class ResultConsumer final : public cell::BodyConsumer {
 public:
  ResultConsumer(std::unique_ptr<ResultFolder> folder, std::shared_ptr<RoundAccumulator> acc,
                 std::shared_ptr<SharedSummary> summary, std::string site, double weight, json metrics,
                 double num_steps, uint64_t bytes, std::shared_ptr<spdlog::logger> log, std::string what)
      : acc_(std::move(acc)), folder_(std::move(folder)), summary_(std::move(summary)), site_(std::move(site)),
        weight_(weight), metrics_(std::move(metrics)), num_steps_(num_steps), bytes_(bytes), progress_(bytes),
        log_(std::move(log)), what_(std::move(what)) {}

  Status Write(std::span<const uint8_t> chunk) override {
    if (auto line = progress_.Add(chunk.size())) log_->info("{}: {}", what_, *line);
    return folder_->Write(chunk);
  }
  Status Finish() override {
    EMBER_RETURN_IF_ERROR(acc_->Commit(*folder_, weight_, metrics_));
    std::lock_guard lock(summary_->mu);
    summary_->sites.push_back(site_);
    summary_->num_steps += num_steps_;
    summary_->bytes_in += bytes_;
    return Status::Ok();
  }
  void Cancel(const Status&) override {
    if (Status s = folder_->Cancel(); !s.ok()) acc_->Poison(s);
  }

 private:
  std::shared_ptr<RoundAccumulator> acc_;   // declared first: outlives folder_, which folds into it
  std::unique_ptr<ResultFolder> folder_;
  std::shared_ptr<SharedSummary> summary_;
  std::string site_;
  double weight_;
  json metrics_;
  double num_steps_;
  uint64_t bytes_;
  base::TransferProgress progress_;
  std::shared_ptr<spdlog::logger> log_;
  std::string what_;
};

}  // namespace

FedAvg::FedAvg(ServerConfig config, std::string job_id, std::string workspace,
               std::shared_ptr<spdlog::logger> log)
    : config_(std::move(config)),
      job_id_(std::move(job_id)),
      workspace_(std::move(workspace)),
      log_(std::move(log)),
      outputs_(workspace_) {}

Status FedAvg::Run(ServerComm& comm) {
  Status s = [&]() -> Status {
    if (!config_.stop_cond.empty()) {
      EMBER_ASSIGN_OR_RETURN(StopCondition c, StopCondition::Parse(config_.stop_cond));
      stop_ = c;
    }
    EMBER_ASSIGN_OR_RETURN(global_, GlobalModel::Open(config_.initial_model));
    log_->info("job {}: waiting for {} site(s)", job_id_, config_.min_clients);
    return RunRounds(comm);
  }();
  json fields = {{"job_id", job_id_},
                 {"rounds_completed", rounds_completed_},
                 {"global_model", Path(config_.save_filename)},
                 {"key_metric", config_.key_metric}};
  if (best_round_ >= 0) {
    fields["best"] = {{"round", best_round_}, {"value", *best_value_}, {"path", Path(config_.best_filename)}};
  }
  if (!s.ok()) fields["error"] = s.message();
  if (!stop_reason_.empty()) fields["stop_reason"] = stop_reason_;
  const char* status = !s.ok() ? "failed" : stop_reason_.empty() ? "completed" : "stopped_early";
  Status w = outputs_.WriteResult(status, fields);
  if (!w.ok()) log_->error("{}", w.ToString());
  return s;
}

// Each round goes to the sites connected when it starts (a site excluded from a round
// for a disconnect takes part again once it is back).
Status FedAvg::RunRounds(ServerComm& comm) {
  for (int round = 0; round < config_.num_rounds; ++round) {
    EMBER_ASSIGN_OR_RETURN(auto sites, comm.WaitForSites(config_.min_clients));
    EMBER_ASSIGN_OR_RETURN(RoundSummary summary, RunOneRound(comm, round, sites));
    rounds_completed_ = round + 1;
    EMBER_RETURN_IF_ERROR(outputs_.AppendRound(summary));
    log_->info("round {} ({}/{}): {}/{} sites reported{}, {:.1f} MiB out, {:.1f} MiB in, {:.2f} s{}", round,
               round + 1, config_.num_rounds, summary.sites.size(), sites.size(), FormatExcluded(summary.excluded),
               MiB(summary.bytes_out), MiB(summary.bytes_in), summary.seconds, FormatMetrics(summary.metrics));
    if (config_.server_memory_gc_rounds > 0 && (round + 1) % config_.server_memory_gc_rounds == 0) {
      base::TrimResult t = base::TrimMemory();
      log_->info("memory trim: RSS {:.1f} -> {:.1f} MiB", MiB(t.rss_before_bytes), MiB(t.rss_after_bytes));
    }
    if (ShouldStop(summary.metrics)) {
      log_->info("job {}: stopping after round {}: {}", job_id_, round, stop_reason_);
      break;
    }
  }
  return Status::Ok();
}

Result<RoundSummary> FedAvg::RunOneRound(ServerComm& comm, int round, const std::vector<std::string>& sites) {
  const auto t0 = std::chrono::steady_clock::now();
  RoundSummary summary;
  summary.round = round;
  json task = {{"task_name", "train"},   {"job_id", job_id_},
               {"current_round", round}, {"total_rounds", config_.num_rounds},
               {"params_type", config_.params_transfer_type}, {"meta", json::object()}};
  // Shared with the result consumers, which may outlive a failed round.
  // Journal folded bytes only if the round could survive losing a result (docs/memory.md).
  const bool journal = static_cast<int>(sites.size()) > config_.min_clients;
  auto acc = std::make_shared<RoundAccumulator>(
      global_, AccumulatorOptions{config_.exclude_vars, AccumulateAs(), workspace_, journal, sum_pool_});
  auto shared_summary = std::make_shared<SharedSummary>();
  auto on_result = [this, acc, shared_summary, round](const std::string& site, const json& h,
                                               uint64_t body_size) -> Result<std::unique_ptr<cell::BodyConsumer>> {
    EMBER_ASSIGN_OR_RETURN(ParamsType type, ParseParamsType(h.value("params_type", "FULL")));
    const json meta = h.value("meta", json::object());
    const double weight = SiteWeight(site, meta);
    EMBER_ASSIGN_OR_RETURN(auto folder, acc->Begin(site, body_size, weight, type));
    return std::unique_ptr<cell::BodyConsumer>(new ResultConsumer(
        std::move(folder), acc, shared_summary, site, weight, h.value("metrics", json::object()),
        meta.value("NUM_STEPS_CURRENT_ROUND", 1.0), body_size, log_,
        site + " job " + job_id_ + " round " + std::to_string(round) + ": receiving result"));
  };
  EMBER_ASSIGN_OR_RETURN(summary.excluded, comm.RunRound(round, sites, task, global_.body(), on_result));
  {
    std::lock_guard lock(shared_summary->mu);
    summary.sites = shared_summary->sites;
    summary.num_steps = shared_summary->num_steps;
    summary.bytes_in = shared_summary->bytes_in;
  }
  if (static_cast<int>(summary.sites.size()) < config_.min_clients) {
    return Status::Unavailable("job " + job_id_ + " round " + std::to_string(round) + ": only " +
                               std::to_string(summary.sites.size()) + " result(s), min_clients is " +
                               std::to_string(config_.min_clients) + FormatExcluded(summary.excluded));
  }
  summary.bytes_out = global_.size() * sites.size();
  summary.metrics = acc->AggregatedMetrics();
  EMBER_RETURN_IF_ERROR(TrackBest(round, summary.metrics));
  EMBER_ASSIGN_OR_RETURN(global_, acc->Finish(Path(config_.save_filename)));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

tensor::AccumulateAs FedAvg::AccumulateAs() const {
  auto a = ParseAccumulateAs(config_.aggregation_accumulate);
  return a.ok() ? *a : tensor::AccumulateAs::kModel;  // validated when the job was loaded
}

double FedAvg::SiteWeight(const std::string& site, const json& meta) const {
  double w = 1.0;
  if (auto it = config_.aggregation_weights.find(site); it != config_.aggregation_weights.end()) w = it->second;
  auto steps = meta.find("NUM_STEPS_CURRENT_ROUND");
  if (steps != meta.end() && steps->is_number()) w *= steps->get<double>();
  return w;
}

Status FedAvg::TrackBest(int round, const json& metrics) {
  auto it = metrics.find(config_.key_metric);
  if (it == metrics.end() || !it->is_number()) return Status::Ok();
  const double v = it->get<double>();
  if (best_value_ && v <= *best_value_) {
    ++rounds_without_improvement_;
    return Status::Ok();
  }
  rounds_without_improvement_ = 0;
  best_value_ = v;
  best_round_ = round;
  // The sites' metrics evaluate the model they received this round: that one is the best.
  return global_.CopyTo(Path(config_.best_filename));
}

bool FedAvg::ShouldStop(const json& metrics) {
  if (stop_ && stop_->IsMet(metrics)) {
    stop_reason_ = "stop_cond '" + config_.stop_cond + "' met";
    return true;
  }
  if (config_.patience && rounds_without_improvement_ >= *config_.patience) {
    stop_reason_ = "no improvement of " + config_.key_metric + " for " +
                   std::to_string(rounds_without_improvement_) + " round(s) (patience)";
    return true;
  }
  return false;
}

}  // namespace ember::fl
