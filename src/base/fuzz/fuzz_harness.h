// The harness shared by every layer's fuzz targets (docs/fuzzing.md): the invariant check
// that aborts naming what broke, the split plan of byte-stream targets, the allocation
// limit, and the table a fuzz directory's replay test runs.
//
//   void FuzzFrameDecoder(std::span<const uint8_t> data) {
//     SplitPlan plan = PlanSplits(data);
//     EMBER_FUZZ_CHECK(decoded == plan.stream.size(), "lost {} bytes", plan.stream.size() - decoded);
//   }
//
// A target is a function `void Fn(std::span<const uint8_t>)` in namespace ember::fuzz that
// either returns or aborts; ember_fuzz_targets() (cmake/EmberFuzz.cmake) makes it a
// libFuzzer executable (EMBER_FUZZ=ON, scripts/fuzz.sh) and replays its corpus in
// <layer>_fuzz_replay_test under `make test`.
//
// Thread-safety: a target is called from one thread at a time.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

namespace ember::fuzz {

// One row of a fuzz directory's target table (generated from its CMakeLists.txt).
struct FuzzTarget {
  const char* name;  // corpus/<name>/, regressions/<name>/, executable fuzz_<name>
  void (*function)(std::span<const uint8_t> data);
};

// The first byte's low nibble n says how many of the next bytes are chunk lengths; those
// lengths (0 = an empty read) are cycled over the rest of the input, the stream. n == 0
// feeds the stream in one piece. The high nibble is left to each target for options.
struct SplitPlan {
  uint8_t options = 0;                  // high nibble of the first byte
  std::span<const uint8_t> stream;
  std::vector<size_t> chunks;           // sums to stream.size()
};
SplitPlan PlanSplits(std::span<const uint8_t> data);

// Largest single allocation allowed while a target runs. Inputs are at most 64 KiB
// (-max_len) and a connection reads 256 KiB at a time, so anything bigger was sized by a
// length the input claims (frames claim up to 16 MiB, HEADs 2^64-1 body bytes).
// libFuzzer enforces it with -malloc_limit_mb (scripts/fuzz.sh), the replay test with a
// replaced operator new (allocation_limit.cc).
inline constexpr size_t kMaxAllocationBytes = size_t{4} << 20;

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond, std::string_view why) {
  std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n  %.*s\n", file, line, cond,
               static_cast<int>(why.size()), why.data());
  std::abort();
}

}  // namespace ember::fuzz

// Aborts (a crash libFuzzer records) unless `cond`; the rest is a fmt message.
#define EMBER_FUZZ_CHECK(cond, ...)                                                    \
  do {                                                                                 \
    if (!(cond)) ::ember::fuzz::CheckFailed(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)
