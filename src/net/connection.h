// Connection: one peer link speaking the Ember frame protocol (docs/wire-format.md)
// over a Transport. It exchanges HELLO (checking the token on the accepting side),
// multiplexes outgoing messages as HEAD + DATA frames (SendScheduler; a live body, one
// still arriving, is sent as its bytes become available), reassembles
// incoming ones (StreamAssembler), runs per-stream credit flow control (§8), answers
// PING, and closes on any protocol error with a logged reason.
//
//   auto c = Connection::Create(std::move(transport), ConnectionRole::kConnector, opts,
//                               {.on_ready = ..., .on_message = ..., .on_closed = ...});
//   c->Start();
//   Status s = c->Send(header_json, body);   // any thread; queued, sent in chunks
//
// Guards (docs/config.md, FLARE's names): a write without progress for send_timeout
// closes the connection; a stream without credit for ack_progress_timeout is aborted; a
// write lasting over stall_timeout is reported each check and, with close_stalled, closes
// the connection after stall_consecutive_checks; an idle link is pinged every
// heartbeat_interval and a peer that promised to answer PING is dropped after
// heartbeat_misses silent intervals.
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

#include "base/config.h"
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

// Every field that has a config key (docs/config.md) defaults to the registry's default;
// ApplyConfig() sets them all from a loaded base::Config. 0 disables a timeout.
struct ConnectionOptions {
  std::string local_name;      // our FQCN, sent in HELLO
  std::string token;           // token we present in HELLO; empty = none
  std::string required_token;  // acceptor: the peer must present this; empty = none
  size_t max_incoming_streams = 1024;           // more open at once is a protocol error
  size_t max_queued_messages = 4096;            // Send() beyond this: kResourceExhausted
  size_t max_queued_header_bytes = 64 << 20;    // same, for HEAD bytes not yet written
  StreamSinkFactory sink_factory;               // null: buffer each body in memory

  // ---- from the config registry (key in the comment)
  size_t chunk_size = base::DefaultOf(base::kStreamingChunkSize);        // DATA payload when sending
  uint64_t max_body_size = base::DefaultOf(base::kMaxBodySize);          // larger incoming bodies are rejected
  uint64_t window_size = base::DefaultOf(base::kStreamingWindowSize);    // announced in our HELLO
  std::chrono::milliseconds handshake_timeout = base::DefaultOf(base::kConnectTimeout);
  std::chrono::milliseconds goaway_linger = base::DefaultOf(base::kGoawayLinger);  // Shutdown(): GOAWAY flush wait
  std::chrono::milliseconds send_timeout = base::DefaultOf(base::kStreamingSendTimeout);
  std::chrono::milliseconds ack_progress_timeout = base::DefaultOf(base::kStreamingAckProgressTimeout);
  std::chrono::milliseconds ack_progress_check_interval = base::DefaultOf(base::kStreamingAckProgressCheckInterval);
  std::chrono::milliseconds stall_timeout = base::DefaultOf(base::kSfmSendStallTimeout);
  int stall_consecutive_checks = static_cast<int>(base::DefaultOf(base::kSfmSendStallConsecutiveChecks));
  bool close_stalled = base::DefaultOf(base::kSfmCloseStalledConnection);
  std::chrono::milliseconds check_interval = base::DefaultOf(base::kConnectionCheckInterval);
  std::chrono::milliseconds heartbeat_interval = base::DefaultOf(base::kHeartbeatInterval);
  int heartbeat_misses = static_cast<int>(base::DefaultOf(base::kHeartbeatMisses));

  // Checked when the peer's HELLO arrives (both roles), with the name it claims and what its
  // certificate proved; an error refuses the link with GOAWAY. Null: accept any name.
  std::function<Status(const std::string& peer_name, const PeerIdentity& identity)> authorize_peer;
};

// Sets every field that has a config key (the "from the config registry" group) from `config`.
void ApplyConfig(const base::Config& config, ConnectionOptions* options);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Called once per message on the io thread: OK when its last frame was written, else
  // why it was dropped (stream aborted, connection closed). Must not block.
  using SendDone = SendScheduler::Done;
  // Counters for tests and logs; read from any thread.
  struct Stats {
    uint64_t stall_warnings = 0;         // stalled-write checks reported
    uint64_t pings_sent = 0;
    uint64_t credit_frames_sent = 0;
    uint64_t credit_frames_received = 0;
    uint64_t streams_aborted_for_credit = 0;
  };
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
  // (kUnavailable), the queue is full (kResourceExhausted) or the header is too large;
  // `done` is then not called. Otherwise `done` (if set) reports the outcome later.
  Status Send(wire::Json header, std::shared_ptr<const wire::BodySource> body, SendDone done = nullptr);
  void Ping();
  // Sends GOAWAY {"reason"} and closes once it is written (or after goaway_linger).
  void Shutdown(std::string reason);
  // Closes now; on_closed gets `reason`.
  void Close(Status reason);

  uint64_t id() const { return id_; }
  const std::string& remote_address() const { return remote_address_; }
  // The peer's FQCN from its HELLO; empty before on_ready.
  std::string peer_name() const;
  // What the peer's TLS certificate proved (empty over clear TCP).
  const PeerIdentity& peer_identity() const { return peer_identity_; }
  bool closed() const { return closed_.load(); }
  Stats stats() const;

  Connection(std::unique_ptr<Transport> transport, ConnectionRole role, ConnectionOptions options,
             Callbacks callbacks);  // use Create()

 private:
  enum class State { kHandshake, kOpen, kClosing, kClosed };
  using Clock = std::chrono::steady_clock;
  class Reader;  // the FrameDecoder::Visitor that feeds read bytes to this connection

  void DoStart();
  void StartRead();
  void OnRead(const std::error_code& ec, size_t n);
  Status HandleFrame(wire::Frame frame);
  Status OnHello(const wire::Frame& frame);
  Status OnGoaway(const wire::Frame& frame);
  void Deliver(std::vector<IncomingMessage>& messages);
  Status OnCredit(const wire::Frame& frame);
  StreamAssembler::CreditHooks CreditHooks();
  void OnSinkConsumed(uint32_t stream_id, uint64_t serial, uint64_t bytes);
  std::function<void()> BodyWaker(uint32_t stream_id);
  void OnBodyAvailable(uint32_t stream_id);
  std::string HelloPayload() const;
  void MaybeWrite();
  void FillWriteBuffer();
  void WriteSome();
  void OnWritten(const std::error_code& ec, size_t n);
  void FinishWrites(const Status& status);
  void DoShutdown(Status why, std::string reason);
  void CloseNow(Status why);
  void FailDropped(std::vector<SendDone> dropped, const Status& why);

  // connection_guards.cc: timers behind the guards and liveness.
  void StartGuards();
  void ArmSendTimer();
  void OnSendTimer();
  void ArmPeriodic(asio::steady_timer& timer, std::chrono::milliseconds period, void (Connection::*tick)());
  void OnCheckTick();
  void OnCreditTick();
  void CheckStall(Clock::time_point now);
  void CheckHeartbeat(Clock::time_point now);
  Status Admit(size_t head_bytes);
  void Release(size_t messages, size_t head_bytes);
  std::string Describe() const;

  const uint64_t id_;
  const ConnectionRole role_;
  const ConnectionOptions options_;
  const std::string remote_address_;
  const PeerIdentity peer_identity_;
  const asio::any_io_executor executor_;
  std::atomic<bool> closed_{false};
  std::atomic<size_t> queued_messages_{0};      // Send() accepted, last frame not yet written
  std::atomic<size_t> queued_header_bytes_{0};  // Send() accepted, HEAD not yet written
  mutable std::mutex name_mu_;
  std::string peer_name_;  // guarded by name_mu_
  struct AtomicStats {
    std::atomic<uint64_t> stall_warnings{0}, pings_sent{0}, credit_frames_sent{0},
        credit_frames_received{0}, streams_aborted_for_credit{0};
  } stats_;

  // Owned by the connection's io thread.
  std::unique_ptr<Transport> transport_;
  Callbacks callbacks_;
  State state_ = State::kHandshake;
  Status close_status_;  // reported by on_closed when a GOAWAY we sent is flushed
  wire::FrameDecoder decoder_;
  StreamAssembler assembler_;
  SendScheduler scheduler_;
  std::vector<uint8_t> read_buf_;
  FrameBuffer write_buf_;
  size_t write_pos_ = 0;                 // bytes of write_buf_ already written
  std::vector<SendDone> write_done_;     // messages whose last frame is in write_buf_
  bool writing_ = false;
  bool close_after_write_ = false;
  bool peer_answers_ping_ = false;       // from its HELLO
  Clock::time_point write_started_;      // of the write in progress (stall guard)
  Clock::time_point write_progress_;     // last byte written (send timeout)
  Clock::time_point last_received_;      // last byte read (liveness)
  Clock::time_point last_ping_;
  int stall_checks_ = 0;                 // consecutive stalled checks
  bool send_timer_armed_ = false;
  asio::steady_timer timer_;             // handshake deadline, then GOAWAY linger
  asio::steady_timer send_timer_;        // streaming_send_timeout
  asio::steady_timer check_timer_;       // stalls and heartbeats, every check_interval
  asio::steady_timer credit_timer_;      // streams starved of credit
};

}  // namespace ember::net
