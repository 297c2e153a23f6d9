// Fuzz targets for net's receive path (docs/fuzzing.md): the stream assembler and a
// whole Connection fed the peer's bytes. Each takes arbitrary bytes and either returns or
// aborts with a message naming the broken invariant (base/fuzz/fuzz_harness.h);
// net_fuzz_replay_test replays the checked-in corpus through them in the normal build,
// scripts/fuzz.sh runs them under libFuzzer.
//
//   std::string bytes = ReadFile("corpus/connection/hello.connector");
//   ember::fuzz::FuzzConnection(AsBytes(bytes));   // returns, or aborts naming the bug
//
// Both read a split plan from the front of the input (PlanSplits).
// Thread-safety: each call is self-contained; call from one thread at a time (the
// connection target swaps spdlog's default logger for the duration of the call).
#pragma once

#include <cstdint>
#include <span>

#include "base/fuzz/fuzz_harness.h"

namespace ember::fuzz {

// FrameDecoder -> StreamAssembler, as a Connection drives them: delivered bodies match
// the DATA sent, protocol errors carry a reason, nothing allocates a claimed body size.
void FuzzStreamAssembler(std::span<const uint8_t> data);
// A whole Connection over an in-memory transport that plays the input as the peer's
// bytes: it always closes, exactly once, with a reason, and logs why it refused a peer.
void FuzzConnection(std::span<const uint8_t> data);

}  // namespace ember::fuzz
