// Target 3: the receive path of a connection without its socket: bytes -> FrameDecoder ->
// StreamAssembler, dispatched as Connection::HandleFrame does.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include <map>
#include <string>

#include "net/stream_assembler.h"
#include "net/fuzz/fuzz_targets.h"
#include "wire/frame_decoder.h"

namespace ember::fuzz {
namespace {

using net::IncomingMessage;
using net::StreamAssembler;
using wire::Frame;
using wire::FrameType;

// What the peer sent on each open stream, to compare with what is delivered.
struct Shadow {
  std::map<uint32_t, std::string> bodies;
};

std::string BodyBytes(const IncomingMessage& m) {
  if (!m.body) return "";
  std::string out(m.body->size(), '\0');
  Result<size_t> n = m.body->ReadAt(0, {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  EMBER_FUZZ_CHECK(n.ok() && *n == out.size(), "body of {} bytes does not read back", out.size());
  return out;
}

void CheckDelivered(const IncomingMessage& m, const std::string& sent) {
  EMBER_FUZZ_CHECK(m.header.is_object(), "delivered a header that is not an object");
  Result<uint64_t> size = wire::ReadBodySize(m.header);
  EMBER_FUZZ_CHECK(size.ok() && *size == sent.size(), "delivered body_size {} after {} DATA bytes",
                   size.ok() ? *size : 0, sent.size());
  if (!m.status.ok()) {
    EMBER_FUZZ_CHECK(!m.status.message().empty() && m.body == nullptr, "rejected body without a reason");
    return;
  }
  EMBER_FUZZ_CHECK(BodyBytes(m) == sent, "delivered body differs from the DATA sent");
}

// Returns false once the assembler reports a protocol error (the connection would close).
bool Dispatch(StreamAssembler& assembler, Frame frame, Shadow& shadow, size_t max_streams) {
  FrameType type = frame.header.type;
  uint32_t id = frame.header.stream_id;
  if (type == FrameType::kGoaway) return false;
  // HELLO, PING, PONG, CREDIT: the connection's business (connection_target.cc).
  if (type != FrameType::kHead && type != FrameType::kData && type != FrameType::kAbort) return true;

  if (type == FrameType::kData && shadow.bodies.contains(id)) shadow.bodies[id] += frame.payload;
  if (type == FrameType::kHead && !shadow.bodies.contains(id)) shadow.bodies[id];
  std::vector<IncomingMessage> done;
  Status s = assembler.OnFrame(std::move(frame), &done);
  if (!s.ok()) {
    EMBER_FUZZ_CHECK(!s.message().empty(), "protocol error without a reason");
    EMBER_FUZZ_CHECK(done.empty(), "delivered a message from a frame it rejected");
    return false;
  }
  EMBER_FUZZ_CHECK(done.size() <= 1, "one frame completed {} messages", done.size());
  if (type == FrameType::kAbort) shadow.bodies.erase(id);
  if (!done.empty()) {
    CheckDelivered(done[0], shadow.bodies[id]);
    shadow.bodies.erase(id);
  }
  EMBER_FUZZ_CHECK(assembler.open_streams() <= max_streams, "{} streams open", assembler.open_streams());
  return true;
}

}  // namespace

void FuzzStreamAssembler(std::span<const uint8_t> data) {
  SplitPlan plan = PlanSplits(data);
  // Option bit 0: a connection's defaults (64 GiB bodies, 1024 streams), else tight
  // limits so the reject-and-drain path runs too.
  StreamAssembler::Limits limits;
  if (plan.options & 1) limits = {.max_body_size = 64, .max_open_streams = 4};
  StreamAssembler assembler(limits, nullptr);  // the default, buffering sink
  wire::FrameDecoder decoder;
  Shadow shadow;
  std::span<const uint8_t> stream = plan.stream;
  for (size_t len : plan.chunks) {
    std::vector<Frame> frames;
    Status fed = decoder.Feed(stream.first(len), &frames);
    stream = stream.subspan(len);
    for (Frame& f : frames) {
      if (!Dispatch(assembler, std::move(f), shadow, limits.max_open_streams)) {
        assembler.CancelAll(Status::Aborted("protocol error"));
        return;
      }
    }
    if (!fed.ok()) break;
  }
  assembler.CancelAll(Status::Unavailable("peer closed"));
  EMBER_FUZZ_CHECK(assembler.open_streams() == 0, "streams left open after CancelAll");
}

}  // namespace ember::fuzz
