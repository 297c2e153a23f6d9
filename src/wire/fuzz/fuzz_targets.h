// Fuzz targets for the receive side of the wire codecs (docs/fuzzing.md). Each takes
// arbitrary bytes and either returns or aborts with a message naming the broken
// invariant (base/fuzz/fuzz_harness.h); wire_fuzz_replay_test replays the checked-in
// corpus through them in the normal build, scripts/fuzz.sh runs them under libFuzzer.
//
//   std::string bytes = ReadFile("corpus/frame_decoder/head_data.split");
//   ember::fuzz::FuzzFrameDecoder(AsBytes(bytes));   // returns, or aborts naming the bug
//
// Thread-safety: each call is self-contained; call from one thread at a time.
#pragma once

#include <cstdint>
#include <span>

#include "base/fuzz/fuzz_harness.h"

namespace ember::fuzz {

// FrameDecoder fed the stream in the planned chunks (PlanSplits): agrees with a one-shot
// decode, never yields a payload above the type's limit, and the frames re-encode to the
// input bytes.
void FuzzFrameDecoder(std::span<const uint8_t> data);
// The JSON payload codecs (HEAD fields, HELLO, GOAWAY, ABORT), FQCN and status helpers:
// whatever they accept re-encodes and decodes to the same value.
void FuzzMessageHeader(std::span<const uint8_t> data);

}  // namespace ember::fuzz
