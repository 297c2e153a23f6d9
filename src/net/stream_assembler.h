// StreamAssembler: the receive half of a connection's stream multiplexing. Fed the HEAD,
// DATA and ABORT frames of all incoming streams (interleaved), it hands each stream's DATA
// to that stream's StreamSink and emits a message when a stream's END frame arrives.
//
//   StreamAssembler in({.max_body_size = 1 << 30}, nullptr);
//   std::vector<IncomingMessage> done;
//   EMBER_RETURN_IF_ERROR(in.OnFrame(std::move(frame), &done));  // error => close connection
//
// A HEAD whose body_size exceeds the limit, or whose sink fails, does not cost the
// connection: its DATA is read and dropped, and the message is delivered at END with a
// non-OK status so the receiver can answer the requester.
//
// Thread-safety: not thread-safe; owned by one connection's io thread.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "net/stream_sink.h"
#include "wire/frame.h"
#include "wire/message_header.h"

namespace ember::net {

struct IncomingMessage {
  wire::Json header;
  std::shared_ptr<wire::BodySource> body;  // null if empty or rejected
  Status status;                           // non-OK: the body was rejected (header valid)
};

class StreamAssembler {
 public:
  struct Limits {
    uint64_t max_body_size = 64ull << 30;
    size_t max_open_streams = 1024;
  };

  // `factory` null means MakeBufferingSink.
  StreamAssembler(Limits limits, StreamSinkFactory factory);
  ~StreamAssembler();

  // Handles one HEAD, DATA or ABORT frame. Appends each message it completes to `out`.
  // A non-OK status is a protocol error: the caller must close the connection.
  Status OnFrame(wire::Frame frame, std::vector<IncomingMessage>* out);
  // Cancels every open stream (the connection is closing).
  void CancelAll(const Status& why);
  size_t open_streams() const { return streams_.size(); }

 private:
  struct Stream {
    wire::Json header;
    uint64_t body_size = 0;
    uint64_t received = 0;
    std::unique_ptr<StreamSink> sink;  // null once rejected
    Status status;                     // why it was rejected
  };

  Status OnHead(wire::Frame& frame, std::vector<IncomingMessage>* out);
  Status OnData(wire::Frame& frame, std::vector<IncomingMessage>* out);
  void OnAbort(const wire::Frame& frame);
  void Reject(Stream& s, Status why);
  void Complete(uint32_t stream_id, std::vector<IncomingMessage>* out);

  Limits limits_;
  StreamSinkFactory factory_;
  std::unordered_map<uint32_t, Stream> streams_;
};

}  // namespace ember::net
