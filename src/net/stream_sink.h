// StreamSink: where the DATA of one incoming stream goes. A Connection asks its
// StreamSinkFactory for a sink at each HEAD; the default sink buffers the body in one
// allocation of body_size bytes. A later layer (pull downloads, relays that forward while
// receiving, safetensors parsed as it streams) installs a factory whose sinks consume the
// chunks incrementally instead.
//
//   ConnectionOptions o;
//   o.sink_factory = [](const Json& head, uint64_t size) { return MakeBufferingSink(size); };
//
// Thread-safety: a sink is used by one io thread only; a factory may be called from
// several io threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "base/status.h"
#include "wire/body.h"
#include "wire/message_header.h"

namespace ember::net {

class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Called with each DATA payload, in order. An error rejects the message (its remaining
  // DATA is discarded) but keeps the connection.
  virtual Status Write(std::span<const uint8_t> chunk) = 0;
  // All body_size bytes arrived. Returns the body to deliver with the message (null if
  // the sink consumed it).
  virtual Result<std::shared_ptr<wire::BodySource>> Finish() = 0;
  // The stream ended early (ABORT, connection closed, rejected). Releases resources.
  virtual void Cancel(const Status& why) {}
};

// Called at each HEAD with the parsed header and its body_size (already checked against
// the connection's max_body_size). An error rejects the message, as Write does.
using StreamSinkFactory = std::function<Result<std::unique_ptr<StreamSink>>(
    const wire::Json& header, uint64_t body_size)>;

// Buffers the body in one allocation of `body_size` bytes, made here.
Result<std::unique_ptr<StreamSink>> MakeBufferingSink(uint64_t body_size);

}  // namespace ember::net
