// FedAvg: FLARE's FedAvg workflow. Each round sends the global model to every
// registered site, folds each result in as it arrives (RoundAccumulator), replaces or
// adds to the global model (FULL / DIFF), tracks the best model by key_metric, persists
// both, and stops on num_rounds, stop_cond or patience.
//
//   FedAvg workflow(job.server, job_id, "/ws/server", logger);
//   Status outcome = workflow.Run(server_runtime);
//
// Thread-safety: Run is called once, on the server's workflow thread.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>

#include "fl/global_model.h"
#include "fl/job_config.h"
#include "fl/job_outputs.h"
#include "fl/round_accumulator.h"
#include "fl/server.h"
#include "fl/result_folder.h"
#include "fl/stop_condition.h"
#include "tensor/aggregate.h"

namespace ember::fl {

class FedAvg {
 public:
  FedAvg(ServerConfig config, std::string job_id, std::string workspace,
         std::shared_ptr<spdlog::logger> log);
  Status Run(ServerComm& comm);

 private:
  Status RunRounds(ServerComm& comm);
  Result<RoundSummary> RunOneRound(ServerComm& comm, int round, const std::vector<std::string>& sites);
  // Updates the best model from the metrics that evaluate the model sent this round.
  Status TrackBest(int round, const nlohmann::json& metrics);
  // True when stop_cond is met or patience is exhausted.
  bool ShouldStop(const nlohmann::json& metrics);
  double SiteWeight(const std::string& site, const nlohmann::json& meta) const;
  tensor::AccumulateAs AccumulateAs() const;
  std::string Path(const std::string& file) const { return workspace_ + "/" + file; }

  ServerConfig config_;
  std::string job_id_;
  std::string workspace_;
  std::shared_ptr<spdlog::logger> log_;
  JobOutputs outputs_;
  GlobalModel global_;
  std::shared_ptr<SumPool> sum_pool_ = std::make_shared<SumPool>();  // the round sum, reused
  std::optional<StopCondition> stop_;
  std::optional<double> best_value_;
  int best_round_ = -1;
  int rounds_without_improvement_ = 0;
  int rounds_completed_ = 0;
  std::string stop_reason_;
};

}  // namespace ember::fl
