#include <algorithm>

#include "base/fuzz/fuzz_harness.h"

namespace ember::fuzz {

SplitPlan PlanSplits(std::span<const uint8_t> data) {
  SplitPlan plan;
  if (data.empty()) return plan;
  plan.options = data[0] >> 4;
  size_t n = std::min<size_t>(data[0] & 0x0F, data.size() - 1);
  std::span<const uint8_t> lengths = data.subspan(1, n);
  plan.stream = data.subspan(1 + n);
  size_t left = plan.stream.size();
  if (lengths.empty()) {
    plan.chunks.push_back(left);
    return plan;
  }
  size_t idle = 0;  // consecutive empty reads; a full cycle of them ends the plan
  for (size_t i = 0; left > 0; ++i) {
    size_t len = std::min<size_t>(lengths[i % lengths.size()], left);
    plan.chunks.push_back(len);
    left -= len;
    idle = len == 0 ? idle + 1 : 0;
    if (idle >= lengths.size()) {
      plan.chunks.push_back(left);
      break;
    }
  }
  return plan;
}

}  // namespace ember::fuzz
