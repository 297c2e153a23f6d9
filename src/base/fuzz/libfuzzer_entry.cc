// libFuzzer's entry point for one target; ember_fuzz_targets() (cmake/EmberFuzz.cmake)
// compiles this file once per target with EMBER_FUZZ_TARGET naming its function.
#include "base/fuzz/fuzz_harness.h"

namespace ember::fuzz {
void EMBER_FUZZ_TARGET(std::span<const uint8_t> data);
}  // namespace ember::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ember::fuzz::EMBER_FUZZ_TARGET(std::span<const uint8_t>(data, size));
  return 0;
}
