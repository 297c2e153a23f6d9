// SendScheduler: the send half of a connection's stream multiplexing. It decides which
// frame goes next:
//   1. control frames (HELLO, PING, PONG, GOAWAY, CREDIT, ABORT), in order;
//   2. the DATA of a message whose whole body fits in one chunk, right after its HEAD
//      (small messages complete in the order they were queued);
//   3. the HEAD of the next message;
//   4. one DATA chunk of a larger body that has flow-control credit, round-robin over
//      those streams. A stream without credit is skipped, never waited for.
// So small messages and control frames never wait behind a large transfer.
// Bodies are read lazily, one chunk at a time, with BodySource::ReadAt straight into the
// output buffer; a body is never copied whole.
//
// Live bodies (BodySource::available() < size(), e.g. a relay forwarding a stream as it
// arrives): a DATA frame carries at most the bytes available now, and a stream with
// credit but nothing available is parked "waiting for data" (not ready, and not counted
// as starved of credit by TakeStalled). The scheduler asks the body to wake it through
// the WakeFactory's callback; the owner then calls OnBodyAvailable on its own thread.
//
//   SendScheduler s(1 << 20);
//   s.SetPeerWindow(16 << 20);                       // from the peer's HELLO
//   s.AddMessage(head_json, body, [](const Status& st) { ... });
//   while (auto a = s.AppendNext(&buf, /*allow_streams=*/true)) { ... }
//   s.OnCredit(stream_id, bytes);                    // a CREDIT frame arrived
//   s.OnBodyAvailable(stream_id);                    // a parked live body woke us
//
// Flow control (docs/wire-format.md §8): a stream may send at most `peer window` body
// bytes plus the CREDIT it has received.
//
// Thread-safety: not thread-safe; owned by one connection's io thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/status.h"
#include "wire/body.h"
#include "wire/frame.h"

namespace ember::net {

// Allocator whose construct() default-initializes: resizing a byte buffer does not zero
// the new bytes, which are overwritten at once (a DATA payload read straight into place).
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  using std::allocator<T>::allocator;
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// Frames on their way to the socket.
using FrameBuffer = std::vector<uint8_t, DefaultInitAllocator<uint8_t>>;

class SendScheduler {
 public:
  using Clock = std::chrono::steady_clock;
  // Called once per message: OK when its last frame has been written, else why it was
  // dropped (aborted, connection closed). May be null.
  using Done = std::function<void(const Status&)>;

  struct Appended {
    wire::FrameType type = wire::FrameType::kPing;
    uint32_t stream_id = 0;
    bool message_done = false;  // the message's last frame (END, or ABORT on a read error)
    Status error;               // why the stream was aborted, if it was
    Done done;                  // the message's callback, handed over with message_done
  };
  // A stream that waited for credit too long; it has been removed from the schedule.
  struct Stalled {
    uint32_t stream_id = 0;
    uint64_t offset = 0;  // body bytes sent
    uint64_t size = 0;
    Clock::duration waited{};
    Done done;
  };

  // Makes the callback a parked live body calls (once, from any thread) when it has more
  // bytes: it must get OnBodyAvailable(stream_id) called on the scheduler's thread.
  using WakeFactory = std::function<std::function<void()>(uint32_t stream_id)>;

  // REQUIRES: 0 < chunk_size <= wire::kMaxFramePayload. `wake` is needed for live bodies
  // only (without it a parked live body is never resumed).
  explicit SendScheduler(size_t chunk_size, WakeFactory wake = nullptr);

  // Queues a connection-level frame (HELLO, PING, PONG, GOAWAY); control frames go first,
  // in order.
  void AddControl(wire::FrameType type, std::string payload);
  // Queues CREDIT(stream_id, bytes) for an incoming stream, with control priority.
  void AddCredit(uint32_t stream_id, uint64_t bytes);
  // Queues ABORT for an outgoing stream (already removed from the schedule).
  void AddAbort(uint32_t stream_id, std::string payload);
  // Queues a message; returns its stream id. REQUIRES: head_json.size() <= kMaxHeaderBytes.
  uint32_t AddMessage(std::string head_json, std::shared_ptr<const wire::BodySource> body,
                      Done done = nullptr);

  // Initial credit of every stream whose HEAD goes out from now on (the peer's HELLO
  // window; 0 means wire::kDefaultWindow).
  void SetPeerWindow(uint64_t window);
  // CREDIT arrived for our stream `stream_id`. Credit for a stream that already ended is
  // ignored (it crossed our END).
  void OnCredit(uint32_t stream_id, uint64_t bytes);
  // The live body of stream `stream_id` may have more bytes (its wake callback ran).
  // Ignored if the stream is not parked (ended, aborted, or already resumed).
  void OnBodyAvailable(uint32_t stream_id);

  // Appends the next frame (header + payload) to `out`. Stream frames are held back while
  // `allow_streams` is false (handshake, closing). Returns nullopt when nothing is ready.
  std::optional<Appended> AppendNext(FrameBuffer* out, bool allow_streams,
                                     Clock::time_point now = Clock::now());

  // Removes and returns every stream that has waited for credit for `timeout` or longer.
  // A stream waiting for its live body's data is not starved of credit and never taken.
  std::vector<Stalled> TakeStalled(Clock::time_point now, Clock::duration timeout);

  // Drops every queued frame; returns how many messages were dropped unfinished and
  // appends their callbacks to `dropped`.
  size_t Clear(std::vector<Done>* dropped = nullptr);
  size_t queued_messages() const { return heads_.size() + bodies_.size(); }
  // Bytes of HEAD payloads not yet appended.
  size_t queued_head_bytes() const { return head_bytes_; }
  bool has_control() const { return !control_.empty(); }
  // Streams with body left to send but no credit.
  size_t blocked_streams() const { return bodies_.size() - ready_.size() - small_.size() - waiting_streams_; }
  // Streams with credit whose live body has nothing more available yet (parked).
  size_t waiting_streams() const { return waiting_streams_; }

 private:
  struct OutStream {
    uint32_t id = 0;
    std::string head;
    std::shared_ptr<const wire::BodySource> body;
    uint64_t size = 0;
    uint64_t offset = 0;
    uint64_t limit = 0;  // body bytes it may send: peer window + credit received
    bool ready = false;  // in ready_
    bool waiting = false;  // parked until its live body has more bytes
    Clock::time_point blocked_since;
    Done done;
  };
  struct Control {
    wire::FrameType type;
    uint32_t stream_id;
    std::string payload;
  };

  Appended AppendControl(FrameBuffer* out);
  Appended AppendHead(FrameBuffer* out, Clock::time_point now);
  Appended AppendData(std::deque<uint32_t>& from, FrameBuffer* out, Clock::time_point now);
  Appended AbortUnreadable(FrameBuffer* out, OutStream& s, Status why);
  void Continue(OutStream& s);
  void Park(OutStream& s);
  void MarkReady(OutStream& s);
  uint32_t NextStreamId();

  size_t chunk_size_;
  WakeFactory wake_;
  size_t waiting_streams_ = 0;
  uint64_t peer_window_ = wire::kDefaultWindow;
  uint32_t next_stream_id_ = 1;
  size_t head_bytes_ = 0;
  std::deque<Control> control_;
  std::deque<OutStream> heads_;                        // HEAD not sent yet
  std::unordered_map<uint32_t, OutStream> bodies_;     // HEAD sent, DATA remaining
  std::deque<uint32_t> small_;                         // bodies_ sent in one chunk, FIFO
  std::deque<uint32_t> ready_;                         // other bodies_ with credit; round-robin
};

// Appends one frame to `out`.
void AppendFrame(FrameBuffer* out, wire::FrameType type, uint16_t flags,
                 uint32_t stream_id, std::string_view payload);

}  // namespace ember::net
