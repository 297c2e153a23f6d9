// Target 1: the frame decoder, fed in arbitrary chunks.
#include <string>

#include "wire/frame_decoder.h"
#include "wire/fuzz/fuzz_targets.h"

namespace ember::fuzz {
namespace {

using wire::Frame;
using wire::FrameDecoder;

struct Decoded {
  std::vector<Frame> frames;
  Status status;
  size_t buffered = 0;
};

Decoded Decode(std::span<const uint8_t> stream, const std::vector<size_t>& chunks,
               FrameDecoder& decoder) {
  Decoded d;
  for (size_t len : chunks) {
    d.status = decoder.Feed(stream.first(len), &d.frames);
    stream = stream.subspan(len);
    if (!d.status.ok()) break;
  }
  d.buffered = decoder.buffered_bytes();
  return d;
}

bool SameFrame(const Frame& a, const Frame& b) {
  return a.header.type == b.header.type && a.header.flags == b.header.flags &&
         a.header.stream_id == b.header.stream_id && a.header.length == b.header.length &&
         a.payload == b.payload;
}

// Re-encodes the frames; they must be the exact prefix of the stream they came from.
size_t CheckReencodes(const std::vector<Frame>& frames, std::span<const uint8_t> stream) {
  std::string_view in(reinterpret_cast<const char*>(stream.data()), stream.size());
  size_t at = 0;
  for (const Frame& f : frames) {
    EMBER_FUZZ_CHECK(f.payload.size() == f.header.length, "payload {} bytes, header says {}",
                     f.payload.size(), f.header.length);
    EMBER_FUZZ_CHECK(f.header.length <= wire::MaxPayload(f.header.type),
                     "{} frame of {} bytes passed the decoder", wire::FrameTypeName(f.header.type),
                     f.header.length);
    std::string bytes = wire::EncodeFrame(f.header.type, f.header.flags, f.header.stream_id, f.payload);
    EMBER_FUZZ_CHECK(in.substr(at, bytes.size()) == bytes, "frame at offset {} re-encodes differently", at);
    at += bytes.size();
  }
  return at;
}

}  // namespace

void FuzzFrameDecoder(std::span<const uint8_t> data) {
  SplitPlan plan = PlanSplits(data);
  FrameDecoder split_decoder, whole_decoder;
  Decoded split = Decode(plan.stream, plan.chunks, split_decoder);
  Decoded whole = Decode(plan.stream, {plan.stream.size()}, whole_decoder);

  // How the bytes were chunked must not change what is decoded.
  EMBER_FUZZ_CHECK(split.status.ToString() == whole.status.ToString(), "split: {} / whole: {}",
                   split.status.ToString(), whole.status.ToString());
  EMBER_FUZZ_CHECK(split.frames.size() == whole.frames.size(), "split gave {} frames, whole {}",
                   split.frames.size(), whole.frames.size());
  for (size_t i = 0; i < split.frames.size(); ++i) {
    EMBER_FUZZ_CHECK(SameFrame(split.frames[i], whole.frames[i]), "frame {} differs", i);
  }

  size_t consumed = CheckReencodes(whole.frames, plan.stream);
  if (whole.status.ok()) {
    // Everything not yet a frame is buffered, and no more than one frame's worth.
    EMBER_FUZZ_CHECK(consumed + whole.buffered == plan.stream.size(), "{} + {} buffered != {}",
                     consumed, whole.buffered, plan.stream.size());
    EMBER_FUZZ_CHECK(whole.buffered <= wire::kFrameHeaderSize + wire::kMaxFramePayload,
                     "{} bytes buffered", whole.buffered);
    Status finish = whole_decoder.Finish();
    EMBER_FUZZ_CHECK(finish.ok() == (whole.buffered == 0), "Finish {} with {} buffered",
                     finish.ToString(), whole.buffered);
    EMBER_FUZZ_CHECK(finish.ok() || !finish.message().empty(), "truncation error without a reason");
    return;
  }
  // A rejected header is the 16 bytes after the last good frame, and the error is sticky.
  EMBER_FUZZ_CHECK(!whole.status.message().empty(), "error without a reason");
  EMBER_FUZZ_CHECK(plan.stream.size() - consumed >= wire::kFrameHeaderSize,
                   "error {} with only {} bytes after the last frame", whole.status.ToString(),
                   plan.stream.size() - consumed);
  Result<wire::FrameHeader> header = wire::DecodeFrameHeader(plan.stream.subspan(consumed, wire::kFrameHeaderSize));
  EMBER_FUZZ_CHECK(!header.ok() && header.status().ToString() == whole.status.ToString(),
                   "decoder said {}, header alone says {}", whole.status.ToString(),
                   header.status().ToString());
  std::vector<Frame> more;
  Status again = whole_decoder.Feed(plan.stream, &more);
  EMBER_FUZZ_CHECK(again.ToString() == whole.status.ToString() && more.empty(),
                   "decoder recovered after {}: {}", whole.status.ToString(), again.ToString());
  EMBER_FUZZ_CHECK(whole_decoder.Finish().ToString() == whole.status.ToString(), "Finish forgot the error");
}

}  // namespace ember::fuzz
