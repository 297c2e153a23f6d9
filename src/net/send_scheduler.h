// SendScheduler: the send half of a connection's stream multiplexing. It decides which
// frame goes next: connection-level control frames first, then the HEAD of any new
// message, then a body that fits in one chunk, then one DATA chunk of each larger body in
// turn (round-robin), so a large transfer never holds back small messages. Bodies are read lazily, one chunk at a time, with
// BodySource::ReadAt straight into the output buffer; a body is never copied whole.
//
//   SendScheduler s(1 << 20);
//   s.AddMessage(head_json, body);
//   while (auto a = s.AppendNext(&buf, /*allow_streams=*/true)) { ... }
//
// Issue 3 extends the choice of the next stream (credit, priorities) in PickStream.
//
// Thread-safety: not thread-safe; owned by one connection's io thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "wire/body.h"
#include "wire/frame.h"

namespace ember::net {

class SendScheduler {
 public:
  struct Appended {
    wire::FrameType type = wire::FrameType::kPing;
    uint32_t stream_id = 0;
    bool message_done = false;  // the message's last frame (END, or ABORT on a read error)
    Status error;               // why the stream was aborted, if it was
  };

  // REQUIRES: 0 < chunk_size <= wire::kMaxFramePayload.
  explicit SendScheduler(size_t chunk_size);

  // Queues a connection-level frame (HELLO, PING, PONG, GOAWAY); they go first, in order.
  void AddControl(wire::FrameType type, std::string payload);
  // Queues a message; returns its stream id. REQUIRES: head_json.size() <= kMaxHeaderBytes.
  uint32_t AddMessage(std::string head_json, std::shared_ptr<const wire::BodySource> body);

  // Appends the next frame (header + payload) to `out`. Stream frames are held back while
  // `allow_streams` is false (handshake, closing). Returns nullopt when nothing is ready.
  std::optional<Appended> AppendNext(std::vector<uint8_t>* out, bool allow_streams);

  // Drops every queued frame; returns how many messages were dropped unfinished.
  size_t Clear();
  size_t queued_messages() const { return heads_.size() + bodies_.size(); }
  // Bytes of HEAD payloads not yet appended.
  size_t queued_head_bytes() const { return head_bytes_; }
  bool has_control() const { return !control_.empty(); }

 private:
  struct OutStream {
    uint32_t id = 0;
    std::string head;
    std::shared_ptr<const wire::BodySource> body;
    uint64_t size = 0;
    uint64_t offset = 0;
  };
  struct Control {
    wire::FrameType type;
    std::string payload;
  };

  Appended AppendControl(std::vector<uint8_t>* out);
  Appended AppendHead(std::vector<uint8_t>* out);
  Appended AppendData(std::vector<uint8_t>* out);
  uint32_t NextStreamId();

  size_t chunk_size_;
  uint32_t next_stream_id_ = 1;
  size_t head_bytes_ = 0;
  std::deque<Control> control_;
  std::deque<OutStream> heads_;   // HEAD not sent yet
  std::deque<OutStream> bodies_;  // HEAD sent, DATA remaining; front is next (round-robin)
};

// Appends one frame to `out`.
void AppendFrame(std::vector<uint8_t>* out, wire::FrameType type, uint16_t flags,
                 uint32_t stream_id, std::string_view payload);

}  // namespace ember::net
