#include "fl/job_config.h"

#include <filesystem>
#include <fstream>
#include <regex>

#include "fl/round_accumulator.h"

namespace ember::fl {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

Result<json> ReadJson(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path.string() + ": cannot open (is this a job folder?)");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument(path.string() + ": not a JSON object");
  }
  return j;
}

// Reads j[key] into out when present; a wrong type is an error naming file and key.
template <typename T>
Status Get(const json& j, const char* key, T& out, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  try {
    out = it->get<T>();
  } catch (const json::exception& e) {
    return Status::InvalidArgument(file + ": key '" + key + "' has the wrong type: " + e.what());
  }
  return Status::Ok();
}

Status ParseServer(const json& j, const std::string& file, const fs::path& dir, ServerConfig& s) {
  EMBER_RETURN_IF_ERROR(Get(j, "workflow", s.workflow, file));
  if (!j.contains("min_clients")) return Status::InvalidArgument(file + ": 'min_clients' is required");
  EMBER_RETURN_IF_ERROR(Get(j, "min_clients", s.min_clients, file));
  EMBER_RETURN_IF_ERROR(Get(j, "num_rounds", s.num_rounds, file));
  EMBER_RETURN_IF_ERROR(Get(j, "key_metric", s.key_metric, file));
  EMBER_RETURN_IF_ERROR(Get(j, "stop_cond", s.stop_cond, file));
  if (j.contains("patience") && !j["patience"].is_null()) {
    int p = 0;
    EMBER_RETURN_IF_ERROR(Get(j, "patience", p, file));
    s.patience = p;
  }
  EMBER_RETURN_IF_ERROR(Get(j, "exclude_vars", s.exclude_vars, file));
  EMBER_RETURN_IF_ERROR(Get(j, "aggregation_weights", s.aggregation_weights, file));
  EMBER_RETURN_IF_ERROR(Get(j, "params_transfer_type", s.params_transfer_type, file));
  EMBER_RETURN_IF_ERROR(Get(j, "save_filename", s.save_filename, file));
  EMBER_RETURN_IF_ERROR(Get(j, "best_filename", s.best_filename, file));
  EMBER_RETURN_IF_ERROR(Get(j, "initial_model", s.initial_model, file));
  EMBER_RETURN_IF_ERROR(Get(j, "task_timeout_s", s.task_timeout_s, file));
  EMBER_RETURN_IF_ERROR(Get(j, "server_memory_gc_rounds", s.server_memory_gc_rounds, file));
  EMBER_RETURN_IF_ERROR(Get(j, "aggregation_accumulate", s.aggregation_accumulate, file));
  s.initial_model = (dir / s.initial_model).string();
  return Status::Ok();
}

Status ValidateServer(const ServerConfig& s, const std::string& file) {
  if (s.workflow != "fedavg") {
    return Status::InvalidArgument(file + ": unknown workflow '" + s.workflow + "' (supported: fedavg)");
  }
  if (s.min_clients < 1) return Status::InvalidArgument(file + ": min_clients must be >= 1");
  if (s.num_rounds < 1) return Status::InvalidArgument(file + ": num_rounds must be >= 1");
  if (s.params_transfer_type != "FULL" && s.params_transfer_type != "DIFF") {
    return Status::InvalidArgument(file + ": params_transfer_type must be FULL or DIFF, got '" +
                                   s.params_transfer_type + "'");
  }
  if (auto a = ParseAccumulateAs(s.aggregation_accumulate); !a.ok()) return a.status().WithContext(file);
  if (!s.exclude_vars.empty()) {
    try {
      std::regex re(s.exclude_vars);
    } catch (const std::regex_error& e) {
      return Status::InvalidArgument(file + ": exclude_vars is not a valid regex: " + e.what());
    }
  }
  for (const auto& [site, w] : s.aggregation_weights) {
    if (w < 0) return Status::InvalidArgument(file + ": aggregation weight of " + site + " is negative");
  }
  return Status::Ok();
}

}  // namespace

Result<ClientConfig> JobConfig::ClientConfigFor(const std::string& site) const {
  json merged = client_json;
  if (auto it = client_json.find("per_site_config"); it != client_json.end() && it->contains(site)) {
    for (auto& [k, v] : (*it)[site].items()) merged[k] = v;
  }
  merged.erase("per_site_config");
  const std::string file = dir + "/client.json";
  ClientConfig c;
  EMBER_RETURN_IF_ERROR(Get(merged, "executor", c.executor, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "train_script", c.train_script, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "train_args", c.train_args, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "command", c.command, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "launch_once", c.launch_once, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "shutdown_timeout", c.shutdown_timeout, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "init_timeout", c.init_timeout, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "framework", c.framework, file));
  EMBER_RETURN_IF_ERROR(Get(merged, "client_memory_gc_rounds", c.client_memory_gc_rounds, file));
  if (c.executor != "launcher") {
    return Status::InvalidArgument(file + ": unknown executor '" + c.executor + "' (supported: launcher)");
  }
  if (c.train_script.empty()) return Status::InvalidArgument(file + ": 'train_script' is required");
  fs::path script = fs::path(dir) / "custom" / c.train_script;
  if (!fs::exists(script)) {
    return Status::NotFound(file + ": train_script '" + c.train_script + "' not found at " + script.string());
  }
  c.train_script = script.string();
  c.raw = merged;
  return c;
}

Result<JobConfig> LoadJobConfig(const std::string& job_dir) {
  std::error_code ec;
  fs::path dir = fs::absolute(job_dir, ec);
  if (!fs::is_directory(dir)) return Status::NotFound("job folder '" + job_dir + "' does not exist");
  JobConfig job;
  job.dir = dir.string();
  EMBER_ASSIGN_OR_RETURN(json meta, ReadJson(dir / "meta.json"));
  job.name = meta.value("name", dir.filename().string());
  EMBER_ASSIGN_OR_RETURN(json server, ReadJson(dir / "server.json"));
  const std::string sfile = (dir / "server.json").string();
  EMBER_RETURN_IF_ERROR(ParseServer(server, sfile, dir, job.server));
  EMBER_RETURN_IF_ERROR(ValidateServer(job.server, sfile));
  if (!fs::exists(job.server.initial_model)) {
    return Status::NotFound(sfile + ": initial model not found at " + job.server.initial_model);
  }
  EMBER_ASSIGN_OR_RETURN(job.client_json, ReadJson(dir / "client.json"));
  return job;
}

}  // namespace ember::fl
