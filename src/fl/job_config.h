// JobConfig: the job folder written by FedAvgRecipe.export (docs/job-format.md), parsed
// and validated before anything runs.
//
//   EMBER_ASSIGN_OR_RETURN(JobConfig job, LoadJobConfig("/tmp/jobs/hello-numpy"));
//   ClientConfig site = job.ClientConfigFor("site-2");   // per_site_config applied
//
// Thread-safety: plain values.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>

#include "base/status.h"

namespace ember::fl {

struct ServerConfig {
  std::string workflow = "fedavg";
  int min_clients = 1;
  int num_rounds = 2;
  std::string key_metric = "accuracy";
  std::string stop_cond;                       // empty = none
  std::optional<int> patience;
  std::string exclude_vars;                    // regex; empty = none
  std::map<std::string, double> aggregation_weights;
  std::string params_transfer_type = "FULL";   // FULL | DIFF
  std::string save_filename = "FL_global_model.safetensors";
  std::string best_filename = "best_FL_global_model.safetensors";
  std::string initial_model = "model/initial.safetensors";  // resolved to an absolute path
  double task_timeout_s = 0;
  int server_memory_gc_rounds = 0;
  // Float type of the round sum: "model" (each tensor's own: F32 for F32/F16/BF16, F64
  // for F64, as FLARE), "F32" or "F64" (opt-in: exact to float64, twice the memory).
  std::string aggregation_accumulate = "model";
};

struct ClientConfig {
  std::string executor = "launcher";
  std::string train_script;                    // resolved to an absolute path
  std::string train_args;
  std::string command = "python3 -u";
  bool launch_once = true;
  double shutdown_timeout = 0.0;
  double init_timeout = 60.0;                  // seconds for the script to call init()
  std::string framework = "numpy";
  int client_memory_gc_rounds = 0;
  nlohmann::json raw = nlohmann::json::object();  // the whole client.json section, for get_config()
};

struct JobConfig {
  std::string dir;                             // absolute job folder
  std::string name;
  ServerConfig server;
  nlohmann::json client_json = nlohmann::json::object();

  // The client configuration for `site`, with per_site_config[site] applied.
  Result<ClientConfig> ClientConfigFor(const std::string& site) const;
};

Result<JobConfig> LoadJobConfig(const std::string& job_dir);

}  // namespace ember::fl
