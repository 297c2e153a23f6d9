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
// Flow control (docs/wire-format.md §8): each stream starts with `window` bytes of credit;
// as its sink consumes (see StreamSink::credit_policy) the assembler grants more through
// CreditHooks::grant, keeping (granted - consumed) <= window. DATA beyond the granted
// credit is a protocol error.
//
// Thread-safety: not thread-safe; owned by one connection's io thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/config.h"
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
    uint64_t max_body_size = base::DefaultOf(base::kMaxBodySize);
    size_t max_open_streams = 1024;
    uint64_t window = wire::kDefaultWindow;  // initial credit per stream, as our HELLO said
  };
  // Both optional: without them credit is tracked (and enforced) but never sent.
  struct CreditHooks {
    // Sends CREDIT(stream_id, bytes). Called on the io thread, from OnFrame or OnConsumed.
    std::function<void(uint32_t stream_id, uint64_t bytes)> grant;
    // A thread-safe handle for a kManual sink; it must lead to OnConsumed(stream_id,
    // serial, bytes) on the io thread (the Connection posts it there).
    std::function<StreamCredit(uint32_t stream_id, uint64_t serial)> make_handle;
  };

  // `factory` null means MakeBufferingSink.
  StreamAssembler(Limits limits, StreamSinkFactory factory, CreditHooks hooks = {});
  ~StreamAssembler();

  // Handles one HEAD, DATA or ABORT frame. Appends each message it completes to `out`.
  // A non-OK status is a protocol error: the caller must close the connection.
  Status OnFrame(wire::Frame frame, std::vector<IncomingMessage>* out);
  // The same for a DATA frame whose payload arrives in pieces (FrameDecoder::Visitor):
  // BeginData checks the frame as a whole, DataPiece hands bytes to the sink, EndData
  // completes the message at END. REQUIRES: pieces total header.length, no other frame
  // in between (frames do not interleave inside a frame).
  Status BeginData(const wire::FrameHeader& header);
  void DataPiece(std::span<const uint8_t> piece);
  Status EndData(const wire::FrameHeader& header, std::vector<IncomingMessage>* out);
  // A kManual sink of stream (`stream_id`, `serial`) consumed `bytes` more. Ignored if
  // that stream has ended.
  void OnConsumed(uint32_t stream_id, uint64_t serial, uint64_t bytes);
  // Cancels every open stream (the connection is closing).
  void CancelAll(const Status& why);
  size_t open_streams() const { return streams_.size(); }
  // Body bytes received but not yet consumed, over all open streams (memory held).
  uint64_t unconsumed_bytes() const;

 private:
  struct Stream {
    wire::Json header;
    uint64_t serial = 0;  // tells a reused stream id apart for late credit
    uint64_t body_size = 0;
    uint64_t received = 0;
    uint64_t consumed = 0;  // reported by the sink (or implied by its policy)
    uint64_t limit = 0;     // body bytes the sender may have sent: granted credit
    std::unique_ptr<StreamSink> sink;  // null once rejected
    CreditPolicy policy = CreditPolicy::kOnWrite;
    Status status;  // why it was rejected
  };

  Status OnHead(wire::Frame& frame, std::vector<IncomingMessage>* out);
  Status OnData(wire::Frame& frame, std::vector<IncomingMessage>* out);
  void OnAbort(const wire::Frame& frame);
  void OpenSink(uint32_t id, Stream& s);
  void Reject(uint32_t id, Stream& s, Status why);
  void Complete(uint32_t stream_id, std::vector<IncomingMessage>* out);
  // Raises s.consumed to `consumed` and grants credit when enough has freed up.
  void Release(uint32_t id, Stream& s, uint64_t consumed);

  Limits limits_;
  StreamSinkFactory factory_;
  CreditHooks hooks_;
  uint64_t grant_threshold_;  // batch CREDIT frames: grant once this much has freed up
  uint64_t next_serial_ = 1;
  std::unordered_map<uint32_t, Stream> streams_;
  Stream* data_stream_ = nullptr;  // the stream of the DATA frame between Begin and EndData
  uint32_t data_stream_id_ = 0;
};

}  // namespace ember::net
