// Connection: one peer link speaking the Ember frame protocol (docs/wire-format.md §1-§3)
// over a Transport. It exchanges HELLO (checking the token on the accepting side),
// multiplexes outgoing messages as HEAD + DATA frames (SendScheduler), reassembles
// incoming ones (StreamAssembler), answers PING, and closes on any protocol error with a
// logged reason.
//
//   auto c = Connection::Create(std::move(transport), ConnectionRole::kConnector, opts,
//                               {.on_ready = ..., .on_message = ..., .on_closed = ...});
//   c->Start();
//   Status s = c->Send(header_json, body);   // any thread; queued, sent in chunks
//
// Thread-safety: public methods may be called from any thread; they post to the
// connection's io thread, which owns all state below the "io thread" banner. Callbacks
// run on that io thread and must not block. on_closed is called exactly once (also when
// the handshake fails), after which no other callback runs.
#pragma once

#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "net/send_scheduler.h"
#include "net/stream_assembler.h"
#include "net/stream_sink.h"
#include "net/transport.h"
#include "wire/frame_decoder.h"

namespace ember::net {

enum class ConnectionRole {
  kConnector,  // sends HELLO first
  kAcceptor,   // answers HELLO, checks the token
};

struct ConnectionOptions {
  std::string local_name;      // our FQCN, sent in HELLO
  std::string token;           // token we present in HELLO; empty = none
  std::string required_token;  // acceptor: the peer must present this; empty = none
  size_t chunk_size = 1 << 20;                  // DATA frame payload when sending
  uint64_t max_body_size = 64ull << 30;         // larger incoming bodies are rejected
  size_t max_incoming_streams = 1024;           // more open at once is a protocol error
  size_t max_queued_messages = 4096;            // Send() beyond this: kResourceExhausted
  size_t max_queued_header_bytes = 64 << 20;    // same, for HEAD bytes not yet written
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds goaway_linger{1000};  // Shutdown(): wait this long for GOAWAY to flush
  StreamSinkFactory sink_factory;               // null: buffer each body in memory
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Ptr = std::shared_ptr<Connection>;
  struct Callbacks {
    std::function<void(const Ptr&)> on_ready;                     // HELLO exchanged
    std::function<void(const Ptr&, IncomingMessage)> on_message;  // a complete message
    std::function<void(const Ptr&, const Status&)> on_closed;     // once, with the reason
  };

  static Ptr Create(std::unique_ptr<Transport> transport, ConnectionRole role,
                    ConnectionOptions options, Callbacks callbacks);
  ~Connection();

  // Begins the handshake. Call once.
  void Start();
  // Queues a message: sets header["body_size"], serializes it here and sends it as HEAD
  // plus DATA chunks read lazily from `body`. Fails fast if the connection is closed
  // (kUnavailable), the queue is full (kResourceExhausted) or the header is too large.
  Status Send(wire::Json header, std::shared_ptr<const wire::BodySource> body);
  void Ping();
  // Sends GOAWAY {"reason"} and closes once it is written (or after goaway_linger).
  void Shutdown(std::string reason);
  // Closes now; on_closed gets `reason`.
  void Close(Status reason);

  uint64_t id() const { return id_; }
  const std::string& remote_address() const { return remote_address_; }
  // The peer's FQCN from its HELLO; empty before on_ready.
  std::string peer_name() const;
  bool closed() const { return closed_.load(); }

  Connection(std::unique_ptr<Transport> transport, ConnectionRole role, ConnectionOptions options,
             Callbacks callbacks);  // use Create()

 private:
  enum class State { kHandshake, kOpen, kClosing, kClosed };

  void DoStart();
  void StartRead();
  void OnRead(const std::error_code& ec, size_t n);
  Status HandleFrame(wire::Frame frame);
  Status OnHello(const wire::Frame& frame);
  Status OnGoaway(const wire::Frame& frame);
  void Deliver(std::vector<IncomingMessage>& messages);
  void MaybeWrite();
  void OnWritten(const std::error_code& ec);
  void DoShutdown(Status why, std::string reason);
  void CloseNow(Status why);
  Status Admit(size_t head_bytes);
  void Release(size_t messages, size_t head_bytes);
  std::string Describe() const;

  const uint64_t id_;
  const ConnectionRole role_;
  const ConnectionOptions options_;
  const std::string remote_address_;
  const asio::any_io_executor executor_;
  std::atomic<bool> closed_{false};
  std::atomic<size_t> queued_messages_{0};      // Send() accepted, last frame not yet written
  std::atomic<size_t> queued_header_bytes_{0};  // Send() accepted, HEAD not yet written
  mutable std::mutex name_mu_;
  std::string peer_name_;  // guarded by name_mu_

  // Owned by the connection's io thread.
  std::unique_ptr<Transport> transport_;
  Callbacks callbacks_;
  State state_ = State::kHandshake;
  Status close_status_;  // reported by on_closed when a GOAWAY we sent is flushed
  wire::FrameDecoder decoder_;
  StreamAssembler assembler_;
  SendScheduler scheduler_;
  std::vector<uint8_t> read_buf_;
  std::vector<uint8_t> write_buf_;
  bool writing_ = false;
  bool close_after_write_ = false;
  asio::steady_timer timer_;  // handshake deadline, then GOAWAY linger
};

}  // namespace ember::net
