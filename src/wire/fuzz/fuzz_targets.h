// Fuzz targets for the receive side of the wire protocol (docs/fuzzing.md). Each takes
// arbitrary bytes and either returns or aborts with a message naming the broken
// invariant; libFuzzer runs them under ASan/UBSan (EMBER_FUZZ=ON, scripts/fuzz.sh) and
// wire_fuzz_replay_test replays the checked-in corpus through them in the normal build.
//
//   std::string bytes = ReadFile("corpus/frame_decoder/head_data.split0");
//   ember::fuzz::FuzzFrameDecoder(AsBytes(bytes));   // returns, or aborts naming the bug
//
// Byte-stream targets (frame decoder, stream assembler, connection) read a split plan
// from the front of the input, see PlanSplits().
//
// Thread-safety: each call is self-contained; call from one thread at a time (the
// connection target swaps spdlog's default logger for the duration of the call).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

namespace ember::fuzz {

// FrameDecoder fed the stream in the planned chunks: agrees with a one-shot decode, never
// yields a payload above the type's limit, and the frames re-encode to the input bytes.
void FuzzFrameDecoder(std::span<const uint8_t> data);
// The JSON payload codecs (HEAD fields, HELLO, GOAWAY, ABORT), FQCN and status helpers:
// whatever they accept re-encodes and decodes to the same value.
void FuzzMessageHeader(std::span<const uint8_t> data);
// FrameDecoder -> StreamAssembler, as a Connection drives them: delivered bodies match
// the DATA sent, protocol errors carry a reason, nothing allocates a claimed body size.
void FuzzStreamAssembler(std::span<const uint8_t> data);
// A whole Connection over an in-memory transport that plays the input as the peer's
// bytes: it always closes, exactly once, with a reason, and logs why it refused a peer.
void FuzzConnection(std::span<const uint8_t> data);

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
