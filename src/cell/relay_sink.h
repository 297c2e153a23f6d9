// Relay: forwards a message body while it is still arriving (pass-through relaying,
// docs/wire-format.md §8 "Relays"). The incoming stream's sink (kManual credit) appends
// each DATA piece to a queue of blocks; the same bytes go downstream as a live BodySource
// whose in-order ReadAt copies them out, frees them and only then returns their credit
// upstream. So a relayed stream holds at most one window plus one block, whatever the
// body size, and a slow downstream holds the original sender back.
//
//   Relay r = MakeRelay(body_size, [](const Status& why) { /* answer the requester */ });
//   Status s = out_conn->Send(header, r.body, r.on_sent);  // downstream, at the HEAD
//   return std::move(r.sink);                             // upstream: the stream's sink
//
// Failures travel both ways:
//   upstream   Cancel (ABORT, connection lost) fails the body: its next ReadAt returns the
//              error, so the downstream connection ABORTs the relayed stream.
//   downstream on_sent with an error (aborted, connection closed) calls
//              `on_downstream_failed` once (unless the upstream failed first), drops what
//              is buffered and makes the sink discard the rest of the body, returning its
//              credit so the upstream sender can finish.
// Either way the sink finishes with a ConsumedBody: the message was already forwarded.
//
// Thread-safety: the sink is used by the incoming connection's io thread; the body is read
// once, in order, by the outgoing connection's io thread; on_sent may run on any thread.
// The state they share is guarded by a mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "base/status.h"
#include "net/stream_sink.h"
#include "wire/body.h"

namespace ember::cell {

struct Relay {
  std::unique_ptr<net::StreamSink> sink;          // for the incoming stream
  std::shared_ptr<const wire::BodySource> body;   // live; send it downstream
  std::function<void(const Status&)> on_sent;     // the downstream Send's `done`
};

// REQUIRES: body_size > 0.
Relay MakeRelay(uint64_t body_size, std::function<void(const Status&)> on_downstream_failed);

// A sink that drops a body the cell has already answered (no route, hop limit), keeping
// its sender moving, and finishes with a ConsumedBody.
std::unique_ptr<net::StreamSink> MakeDiscardingSink();

// Memory held by the blocks of every relay in this process, now and at the peak since the
// last ResetRelayPeak(); for tests and logs.
struct RelayMemory {
  uint64_t held_bytes = 0;
  uint64_t peak_held_bytes = 0;
};
RelayMemory RelayMemoryNow();
void ResetRelayPeak();

}  // namespace ember::cell
