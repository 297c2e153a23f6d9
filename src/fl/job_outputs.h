// JobOutputs: what a job leaves in the server's workspace for users and tools:
// metrics.jsonl (one line per round) and result.json (the outcome). docs/job-format.md.
//
//   JobOutputs out("/ws/server");
//   out.AppendRound(summary);
//   out.WriteResult("completed", job_id, rounds, Status::Ok(), extra);
//
// Thread-safety: not thread-safe; used by the workflow thread only.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace ember::fl {

struct RoundSummary {
  int round = 0;
  std::vector<std::string> sites;                 // whose results were folded in
  std::map<std::string, std::string> excluded;    // left out of the round: site -> why
  nlohmann::json metrics = nlohmann::json::object();
  double num_steps = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  double seconds = 0;
};

class JobOutputs {
 public:
  explicit JobOutputs(std::string dir) : dir_(std::move(dir)) {}
  Status AppendRound(const RoundSummary& s) const;
  // status: "completed", "stopped_early" or "failed".
  Status WriteResult(const std::string& status, const nlohmann::json& fields) const;

 private:
  std::string dir_;
};

}  // namespace ember::fl
