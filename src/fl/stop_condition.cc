#include "fl/stop_condition.h"

#include <sstream>

namespace ember::fl {

Result<StopCondition> StopCondition::Parse(const std::string& text) {
  std::istringstream in(text);
  StopCondition c;
  std::string value;
  in >> c.key_ >> c.op_ >> value;
  std::string rest;
  in >> rest;
  static const char* kOps[] = {">=", ">", "<=", "<", "=="};
  bool known_op = false;
  for (const char* op : kOps) known_op = known_op || c.op_ == op;
  if (c.key_.empty() || !known_op || value.empty() || !rest.empty()) {
    return Status::InvalidArgument("stop_cond '" + text +
                                   "' is not '<metric> <op> <number>' with op one of >= > <= < ==");
  }
  try {
    size_t used = 0;
    c.value_ = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
  } catch (const std::exception&) {
    return Status::InvalidArgument("stop_cond '" + text + "': '" + value + "' is not a number");
  }
  return c;
}

bool StopCondition::IsMet(const nlohmann::json& metrics) const {
  auto it = metrics.find(key_);
  if (it == metrics.end() || !it->is_number()) return false;
  double v = it->get<double>();
  if (op_ == ">=") return v >= value_;
  if (op_ == ">") return v > value_;
  if (op_ == "<=") return v <= value_;
  if (op_ == "<") return v < value_;
  return v == value_;
}

}  // namespace ember::fl
