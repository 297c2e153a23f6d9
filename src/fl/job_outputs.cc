#include "fl/job_outputs.h"

#include <cstdio>
#include <fstream>

namespace ember::fl {

Status JobOutputs::AppendRound(const RoundSummary& s) const {
  nlohmann::json line = {{"round", s.round},       {"sites", s.sites},         {"metrics", s.metrics},
                         {"num_steps", s.num_steps}, {"bytes_in", s.bytes_in}, {"bytes_out", s.bytes_out},
                         {"seconds", s.seconds}};
  if (!s.excluded.empty()) line["excluded"] = s.excluded;
  std::ofstream out(dir_ + "/metrics.jsonl", std::ios::app);
  out << line.dump() << "\n";
  if (!out) return Status::Internal("cannot append to " + dir_ + "/metrics.jsonl");
  return Status::Ok();
}

Status JobOutputs::WriteResult(const std::string& status, const nlohmann::json& fields) const {
  nlohmann::json j = fields;
  j["status"] = status;
  const std::string path = dir_ + "/result.json";
  {
    std::ofstream out(path + ".tmp");
    out << j.dump(2) << "\n";
    if (!out) return Status::Internal("cannot write " + path);
  }
  if (std::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
    return Status::Internal("cannot rename " + path + ".tmp");
  }
  return Status::Ok();
}

}  // namespace ember::fl
