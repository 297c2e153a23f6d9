// StreamSink: where the DATA of one incoming stream goes. A Connection asks its
// StreamSinkFactory for a sink at each HEAD; the default sink buffers the body in one
// allocation of body_size bytes. A later layer (pull downloads, relays that forward while
// receiving, safetensors parsed as it streams) installs a factory whose sinks consume the
// chunks incrementally instead.
//
//   ConnectionOptions o;
//   o.sink_factory = [](const Json& head, uint64_t size) { return MakeBufferingSink(size); };
//
// Flow control (docs/wire-format.md §8): the sender of a stream may be at most one window
// (streaming_window_size) ahead of what the receiving sink has consumed. A sink says how
// it consumes with credit_policy():
//   kOnWrite    each chunk is consumed when Write returns (the default; copy or discard).
//   kWholeBody  the sink already holds room for the whole body: everything is granted at
//               HEAD and the sender is never held back (the buffering sink).
//   kManual     the sink reports consumption itself through the StreamCredit handed to
//               BindCredit, e.g. after a worker pool has processed a chunk. Until then
//               the sender waits, so memory stays bounded by the window.
//
// Thread-safety: a sink is used by one io thread only; a factory may be called from
// several io threads at once. StreamCredit::Consumed may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "base/status.h"
#include "wire/body.h"
#include "wire/message_header.h"

namespace ember::net {

// Returns flow-control credit for one incoming stream. Copyable; thread-safe; a no-op
// once the stream has ended or its connection is gone.
class StreamCredit {
 public:
  StreamCredit() = default;
  explicit StreamCredit(std::function<void(uint64_t)> consumed) : consumed_(std::move(consumed)) {}
  // `bytes` more body bytes of the stream were processed and may be replaced by new ones.
  void Consumed(uint64_t bytes) const {
    if (consumed_ && bytes > 0) consumed_(bytes);
  }

 private:
  std::function<void(uint64_t)> consumed_;
};

enum class CreditPolicy { kOnWrite, kWholeBody, kManual };

class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Called with the body's bytes in order, in pieces of any size: a DATA payload may
  // arrive in several pieces, straight from the connection's read buffer (copy what you
  // keep). An error rejects the message (its remaining DATA is discarded) but keeps the
  // connection.
  virtual Status Write(std::span<const uint8_t> chunk) = 0;
  // All body_size bytes arrived. Returns the body to deliver with the message (null if
  // the sink consumed it).
  virtual Result<std::shared_ptr<wire::BodySource>> Finish() = 0;
  // The stream ended early (ABORT, connection closed, rejected). Releases resources.
  virtual void Cancel(const Status& why) {}
  // How this sink returns flow-control credit (see the top of this file).
  virtual CreditPolicy credit_policy() const { return CreditPolicy::kOnWrite; }
  // kManual sinks only: called once, before the first Write.
  virtual void BindCredit(StreamCredit credit) {}
};

// Called at each HEAD with the parsed header and its body_size (already checked against
// the connection's max_body_size). An error rejects the message, as Write does.
using StreamSinkFactory = std::function<Result<std::unique_ptr<StreamSink>>(
    const wire::Json& header, uint64_t body_size)>;

// Buffers the body in one allocation of `body_size` bytes, made here (kWholeBody).
Result<std::unique_ptr<StreamSink>> MakeBufferingSink(uint64_t body_size);

}  // namespace ember::net
