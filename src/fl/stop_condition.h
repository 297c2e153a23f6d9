// StopCondition: FLARE's `stop_cond` ("accuracy >= 0.9"): a metric key, a comparison
// and a number, checked against the round's aggregated metrics.
//
//   EMBER_ASSIGN_OR_RETURN(StopCondition c, StopCondition::Parse("accuracy >= 0.9"));
//   if (c.IsMet({{"accuracy", 0.93}})) ...
//
// Thread-safety: immutable value.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "base/status.h"

namespace ember::fl {

class StopCondition {
 public:
  static Result<StopCondition> Parse(const std::string& text);
  // False when the metric is missing or not a number.
  bool IsMet(const nlohmann::json& metrics) const;
  const std::string& key() const { return key_; }
  std::string ToString() const { return key_ + " " + op_ + " " + std::to_string(value_); }

 private:
  std::string key_;
  std::string op_;
  double value_ = 0;
};

}  // namespace ember::fl
