// libFuzzer's entry point for one target; CMake compiles this file once per target with
// EMBER_FUZZ_TARGET naming the function of fuzz_targets.h.
#include "wire/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ember::fuzz::EMBER_FUZZ_TARGET(std::span<const uint8_t>(data, size));
  return 0;
}
