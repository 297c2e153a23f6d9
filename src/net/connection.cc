#include "net/connection.h"

#include <asio/post.hpp>
#include <fmt/format.h>

#include <algorithm>

#include "base/log.h"
#include "net/asio_status.h"

namespace ember::net {
namespace {

// The read buffer starts small and doubles, up to one whole default DATA frame, while
// reads keep filling it (bulk traffic), so a chunk usually reaches its sink in one piece.
constexpr size_t kReadBufferBytes = 64 << 10;
constexpr size_t kMaxReadBufferBytes = (1 << 20) + (64 << 10);
// Small frames are batched into one write up to this size; a DATA chunk goes alone.
constexpr size_t kWriteBatchBytes = 64 << 10;

std::atomic<uint64_t> g_next_connection_id{1};

}  // namespace

using wire::FrameType;

// Frames go to HandleFrame as they complete; DATA payloads go to the assembler piece by
// piece straight from the read buffer (no copy). Once the connection stops being open
// (GOAWAY, refused HELLO, a callback closed it) the rest of the buffer is ignored.
class Connection::Reader final : public wire::FrameDecoder::Visitor {
 public:
  explicit Reader(Connection* c) : c_(c) {}

  Status OnFrame(wire::Frame frame) override {
    EMBER_RETURN_IF_ERROR(Live());
    return c_->HandleFrame(std::move(frame));
  }
  Status OnDataBegin(const wire::FrameHeader& header) override {
    EMBER_RETURN_IF_ERROR(Live());
    if (c_->state_ == State::kHandshake) return Status::InvalidArgument("expected HELLO, got DATA");
    return c_->assembler_.BeginData(header);
  }
  Status OnDataPiece(const wire::FrameHeader&, std::span<const uint8_t> piece) override {
    EMBER_RETURN_IF_ERROR(Live());
    c_->assembler_.DataPiece(piece);
    return Status::Ok();
  }
  Status OnDataEnd(const wire::FrameHeader& header) override {
    EMBER_RETURN_IF_ERROR(Live());
    std::vector<IncomingMessage> done;
    EMBER_RETURN_IF_ERROR(c_->assembler_.EndData(header, &done));
    c_->Deliver(done);
    return Status::Ok();
  }

 private:
  Status Live() const {
    if (c_->state_ == State::kHandshake || c_->state_ == State::kOpen) return Status::Ok();
    return Status::Aborted("connection closed while reading");  // OnRead stops quietly
  }
  Connection* c_;
};

Connection::Ptr Connection::Create(std::unique_ptr<Transport> transport, ConnectionRole role,
                                   ConnectionOptions options, Callbacks callbacks) {
  return std::make_shared<Connection>(std::move(transport), role, std::move(options),
                                      std::move(callbacks));
}

Connection::Connection(std::unique_ptr<Transport> transport, ConnectionRole role,
                       ConnectionOptions options, Callbacks callbacks)
    : id_(g_next_connection_id.fetch_add(1)),
      role_(role),
      options_(std::move(options)),
      remote_address_(transport->remote_address()),
      peer_identity_(transport->peer_identity()),
      executor_(transport->executor()),
      transport_(std::move(transport)),
      callbacks_(std::move(callbacks)),
      assembler_({.max_body_size = options_.max_body_size,
                  .max_open_streams = options_.max_incoming_streams,
                  .window = options_.window_size},
                 options_.sink_factory, CreditHooks()),
      scheduler_(options_.chunk_size, [this](uint32_t stream_id) { return BodyWaker(stream_id); }),
      read_buf_(kReadBufferBytes),
      timer_(executor_),
      send_timer_(executor_),
      check_timer_(executor_),
      credit_timer_(executor_) {}

Connection::~Connection() = default;

std::string Connection::peer_name() const {
  std::lock_guard lock(name_mu_);
  return peer_name_;
}

Connection::Stats Connection::stats() const {
  return {.stall_warnings = stats_.stall_warnings.load(),
          .pings_sent = stats_.pings_sent.load(),
          .credit_frames_sent = stats_.credit_frames_sent.load(),
          .credit_frames_received = stats_.credit_frames_received.load(),
          .streams_aborted_for_credit = stats_.streams_aborted_for_credit.load()};
}

void ApplyConfig(const base::Config& config, ConnectionOptions* o) {
  o->chunk_size = static_cast<size_t>(config.Get(base::kStreamingChunkSize));
  o->window_size = config.Get(base::kStreamingWindowSize);
  o->max_body_size = config.Get(base::kMaxBodySize);
  o->send_timeout = config.Get(base::kStreamingSendTimeout);
  o->ack_progress_timeout = config.Get(base::kStreamingAckProgressTimeout);
  o->ack_progress_check_interval = config.Get(base::kStreamingAckProgressCheckInterval);
  o->stall_timeout = config.Get(base::kSfmSendStallTimeout);
  o->stall_consecutive_checks = static_cast<int>(config.Get(base::kSfmSendStallConsecutiveChecks));
  o->close_stalled = config.Get(base::kSfmCloseStalledConnection);
  o->check_interval = config.Get(base::kConnectionCheckInterval);
  o->heartbeat_interval = config.Get(base::kHeartbeatInterval);
  o->heartbeat_misses = static_cast<int>(config.Get(base::kHeartbeatMisses));
  o->handshake_timeout = config.Get(base::kConnectTimeout);
  o->goaway_linger = config.Get(base::kGoawayLinger);
}

std::string Connection::Describe() const {
  std::string name = peer_name();
  return name.empty() ? remote_address_ : fmt::format("{} ({})", name, remote_address_);
}

// ---- public, any thread -------------------------------------------------------------

void Connection::Start() {
  asio::post(executor_, [self = shared_from_this()] { self->DoStart(); });
}

Status Connection::Send(wire::Json header, std::shared_ptr<const wire::BodySource> body, SendDone done) {
  if (closed_.load()) return Status::Unavailable(fmt::format("connection to {} is closed", Describe()));
  header["body_size"] = body ? body->size() : 0;
  std::string head = wire::DumpJson(header);
  if (head.size() > wire::kMaxHeaderBytes) {
    return Status::InvalidArgument(fmt::format("message header of {} bytes exceeds the limit of {}",
                                               head.size(), wire::kMaxHeaderBytes));
  }
  EMBER_RETURN_IF_ERROR(Admit(head.size()));
  asio::post(executor_, [self = shared_from_this(), head = std::move(head), body = std::move(body),
                         done = std::move(done)]() mutable {
    if (self->state_ == State::kClosed || self->state_ == State::kClosing) {
      self->Release(1, head.size());
      if (done) done(Status::Unavailable(fmt::format("connection to {} closed", self->Describe())));
      return;
    }
    self->scheduler_.AddMessage(std::move(head), std::move(body), std::move(done));
    self->MaybeWrite();
  });
  return Status::Ok();
}

// Bounds the send queue by messages and by header bytes (bodies are referenced, not
// copied, so they cost nothing until their chunk is read).
Status Connection::Admit(size_t head_bytes) {
  size_t messages = queued_messages_.fetch_add(1);
  size_t bytes = queued_header_bytes_.fetch_add(head_bytes);
  if (messages < options_.max_queued_messages && bytes + head_bytes <= options_.max_queued_header_bytes) {
    return Status::Ok();
  }
  Release(1, head_bytes);
  return Status::ResourceExhausted(fmt::format("send queue to {} is full ({} messages, {} header bytes)",
                                               Describe(), messages, bytes));
}

void Connection::Release(size_t messages, size_t head_bytes) {
  queued_messages_.fetch_sub(messages);
  queued_header_bytes_.fetch_sub(head_bytes);
}

void Connection::Ping() {
  asio::post(executor_, [self = shared_from_this()] {
    if (self->state_ != State::kOpen) return;
    self->scheduler_.AddControl(FrameType::kPing, "");
    self->MaybeWrite();
  });
}

void Connection::Shutdown(std::string reason) {
  asio::post(executor_, [self = shared_from_this(), reason = std::move(reason)] {
    self->DoShutdown(Status::Unavailable(fmt::format("connection to {} closed locally: {}",
                                                     self->Describe(), reason)),
                     reason);
  });
}

void Connection::Close(Status reason) {
  asio::post(executor_, [self = shared_from_this(), reason = std::move(reason)] { self->CloseNow(reason); });
}

// ---- io thread ----------------------------------------------------------------------

void Connection::DoStart() {
  if (state_ != State::kHandshake) return;
  timer_.expires_after(options_.handshake_timeout);
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec || self->state_ != State::kHandshake) return;
    self->CloseNow(Status::DeadlineExceeded(fmt::format(
        "{}: no HELLO within {} ms", self->Describe(), self->options_.handshake_timeout.count())));
  });
  if (role_ == ConnectionRole::kConnector) scheduler_.AddControl(FrameType::kHello, HelloPayload());
  last_received_ = Clock::now();
  StartRead();
  MaybeWrite();
}

void Connection::StartRead() {
  transport_->AsyncReadSome(read_buf_, [self = shared_from_this()](const std::error_code& ec, size_t n) {
    self->OnRead(ec, n);
  });
}

void Connection::OnRead(const std::error_code& ec, size_t n) {
  if (state_ != State::kHandshake && state_ != State::kOpen) return;
  if (ec) {
    Status why = StatusFromAsio(ec, Describe());
    if (Status partial = decoder_.Finish(); !partial.ok()) why = partial.WithContext(why.message());
    return CloseNow(why);
  }
  last_received_ = Clock::now();
  Reader reader(this);
  Status status = decoder_.Feed({read_buf_.data(), n}, reader);
  if (state_ != State::kHandshake && state_ != State::kOpen) return;  // closed while handling
  if (!status.ok()) {
    EMBER_LOG_WARN("closing the connection to {}: protocol error: {}", Describe(), status.ToString());
    return DoShutdown(status.WithContext(fmt::format("protocol error from {}", Describe())),
                      "protocol error: " + status.message());
  }
  if (state_ != State::kHandshake && state_ != State::kOpen) return;
  MaybeWrite();  // CREDIT and PONG frames queued while handling
  if (n == read_buf_.size() && read_buf_.size() < kMaxReadBufferBytes) {
    read_buf_.resize(std::min(read_buf_.size() * 2, kMaxReadBufferBytes));
  }
  StartRead();
}


Status Connection::HandleFrame(wire::Frame frame) {
  FrameType type = frame.header.type;
  if (state_ == State::kHandshake) {
    if (type == FrameType::kHello) return OnHello(frame);
    if (type == FrameType::kGoaway) return OnGoaway(frame);
    return Status::InvalidArgument(fmt::format("expected HELLO, got {}", wire::FrameTypeName(type)));
  }
  switch (type) {
    case FrameType::kHello:
      return Status::InvalidArgument("second HELLO");
    case FrameType::kHead:
    case FrameType::kData:
    case FrameType::kAbort: {
      std::vector<IncomingMessage> done;
      EMBER_RETURN_IF_ERROR(assembler_.OnFrame(std::move(frame), &done));
      Deliver(done);
      return Status::Ok();
    }
    case FrameType::kPing:
      scheduler_.AddControl(FrameType::kPong, "");
      return Status::Ok();
    case FrameType::kPong:  // liveness counts every byte read, see OnRead
      return Status::Ok();
    case FrameType::kCredit:
      return OnCredit(frame);
    case FrameType::kGoaway:
      return OnGoaway(frame);
  }
  return Status::Ok();
}

Status Connection::OnHello(const wire::Frame& frame) {
  EMBER_ASSIGN_OR_RETURN(wire::Hello hello, wire::DecodeHello(frame.payload));
  if (options_.authorize_peer) {
    if (Status s = options_.authorize_peer(hello.name, peer_identity_); !s.ok()) {
      EMBER_LOG_WARN("refusing '{}' from {}: {}", hello.name, remote_address_, s.message());
      DoShutdown(s.WithContext(fmt::format("refused '{}' from {}", hello.name, remote_address_)), s.message());
      return Status::Ok();
    }
  }
  if (role_ == ConnectionRole::kAcceptor) {
    if (!options_.required_token.empty() && !wire::TokensEqual(hello.token, options_.required_token)) {
      EMBER_LOG_WARN("refusing '{}' from {}: bad token", hello.name, remote_address_);
      DoShutdown(Status::FailedPrecondition(fmt::format("refused '{}' from {}: bad token", hello.name,
                                                        remote_address_)),
                 "bad token");
      return Status::Ok();
    }
    scheduler_.AddControl(FrameType::kHello, HelloPayload());
  }
  scheduler_.SetPeerWindow(hello.window);
  peer_answers_ping_ = hello.answers_ping;
  {
    std::lock_guard lock(name_mu_);
    peer_name_ = hello.name;
  }
  state_ = State::kOpen;
  timer_.cancel();
  StartGuards();
  if (callbacks_.on_ready) callbacks_.on_ready(shared_from_this());
  MaybeWrite();
  return Status::Ok();
}

Status Connection::OnGoaway(const wire::Frame& frame) {
  auto reason = wire::DecodeGoaway(frame.payload);
  std::string text = reason.ok() ? *reason : std::string("(unreadable reason)");
  if (state_ == State::kHandshake) {
    CloseNow(Status::FailedPrecondition(fmt::format("{} refused the connection: {}", Describe(), text)));
  } else {
    CloseNow(Status::Unavailable(fmt::format("{} went away: {}", Describe(), text)));
  }
  return Status::Ok();
}

void Connection::Deliver(std::vector<IncomingMessage>& messages) {
  for (IncomingMessage& m : messages) {
    if (state_ != State::kOpen) return;
    if (callbacks_.on_message) callbacks_.on_message(shared_from_this(), std::move(m));
  }
}

Status Connection::OnCredit(const wire::Frame& frame) {
  EMBER_ASSIGN_OR_RETURN(uint64_t bytes, wire::DecodeCredit(frame.payload));
  stats_.credit_frames_received.fetch_add(1, std::memory_order_relaxed);
  scheduler_.OnCredit(frame.header.stream_id, bytes);
  return Status::Ok();
}

// The assembler grants credit through the scheduler (io thread). A kManual sink gets a
// handle that may be used from any thread: it posts back to this connection's io thread
// and does nothing once the connection is gone.
StreamAssembler::CreditHooks Connection::CreditHooks() {
  return {
      .grant = [this](uint32_t stream_id, uint64_t bytes) {
        scheduler_.AddCredit(stream_id, bytes);
        stats_.credit_frames_sent.fetch_add(1, std::memory_order_relaxed);
      },
      .make_handle = [this](uint32_t stream_id, uint64_t serial) {
        return StreamCredit([weak = weak_from_this(), stream_id, serial](uint64_t bytes) {
          auto self = weak.lock();
          if (!self) return;
          asio::post(self->executor_, [self, stream_id, serial, bytes] {
            self->OnSinkConsumed(stream_id, serial, bytes);
          });
        });
      },
  };
}

// A parked live body calls this from any thread once it has more bytes; it resumes the
// stream on the io thread and does nothing once the connection is gone.
std::function<void()> Connection::BodyWaker(uint32_t stream_id) {
  return [weak = weak_from_this(), stream_id] {
    auto self = weak.lock();
    if (!self) return;
    asio::post(self->executor_, [self, stream_id] { self->OnBodyAvailable(stream_id); });
  };
}

void Connection::OnBodyAvailable(uint32_t stream_id) {
  if (state_ == State::kClosed) return;
  scheduler_.OnBodyAvailable(stream_id);
  MaybeWrite();
}

void Connection::OnSinkConsumed(uint32_t stream_id, uint64_t serial, uint64_t bytes) {
  if (state_ != State::kOpen) return;
  assembler_.OnConsumed(stream_id, serial, bytes);
  MaybeWrite();
}

std::string Connection::HelloPayload() const {
  return wire::EncodeHello({.name = options_.local_name,
                            .version = wire::kProtocolVersion,
                            .token = role_ == ConnectionRole::kConnector ? options_.token : "",
                            .window = options_.window_size,
                            .answers_ping = true});
}

// One write at a time: control frames and HEADs batched up to kWriteBatchBytes, a DATA
// chunk ends the batch, so anything queued meanwhile waits for at most one chunk.
void Connection::MaybeWrite() {
  if (writing_ || state_ == State::kClosed) return;
  FillWriteBuffer();
  if (write_buf_.empty()) return;
  writing_ = true;
  write_pos_ = 0;
  write_started_ = write_progress_ = Clock::now();
  ArmSendTimer();
  WriteSome();
}

void Connection::FillWriteBuffer() {
  write_buf_.clear();
  bool allow_streams = state_ == State::kOpen;
  Clock::time_point now = Clock::now();
  while (write_buf_.size() < kWriteBatchBytes) {
    size_t before = write_buf_.size();
    auto a = scheduler_.AppendNext(&write_buf_, allow_streams, now);
    if (!a) break;
    size_t head_bytes = a->type == FrameType::kHead ? write_buf_.size() - before - wire::kFrameHeaderSize : 0;
    Release(a->message_done ? 1 : 0, head_bytes);
    if (!a->error.ok()) {
      EMBER_LOG_WARN("to {}: {}", Describe(), a->error.ToString());
      if (a->done) a->done(a->error);
    } else if (a->done) {
      write_done_.push_back(std::move(a->done));
    }
    if (a->type == FrameType::kGoaway) {
      close_after_write_ = true;
      break;
    }
  }
}

void Connection::WriteSome() {
  std::span<const uint8_t> rest(write_buf_.data() + write_pos_, write_buf_.size() - write_pos_);
  transport_->AsyncWriteSome(rest, [self = shared_from_this()](const std::error_code& ec, size_t n) {
    self->OnWritten(ec, n);
  });
}

void Connection::OnWritten(const std::error_code& ec, size_t n) {
  if (state_ == State::kClosed) return;
  if (ec) {
    writing_ = false;
    return CloseNow(StatusFromAsio(ec, "write to " + Describe()));
  }
  write_pos_ += n;
  write_progress_ = Clock::now();
  if (write_pos_ < write_buf_.size()) return WriteSome();
  writing_ = false;
  stall_checks_ = 0;
  FinishWrites(Status::Ok());
  if (state_ == State::kClosed) return;  // a callback closed us
  if (close_after_write_) return CloseNow(close_status_);
  MaybeWrite();
}

void Connection::FinishWrites(const Status& status) {
  std::vector<SendDone> done;
  done.swap(write_done_);
  for (SendDone& d : done) d(status);
}

void Connection::FailDropped(std::vector<SendDone> dropped, const Status& why) {
  for (SendDone& d : dropped) {
    if (d) d(why);
  }
}

void Connection::DoShutdown(Status why, std::string reason) {
  if (state_ == State::kClosed || state_ == State::kClosing) return;
  state_ = State::kClosing;
  close_status_ = std::move(why);
  scheduler_.AddControl(FrameType::kGoaway, wire::EncodeGoaway(reason));
  timer_.expires_after(options_.goaway_linger);  // also cancels the handshake deadline
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec || self->state_ != State::kClosing) return;
    self->CloseNow(self->close_status_);
  });
  MaybeWrite();
}

void Connection::CloseNow(Status why) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  closed_.store(true);
  timer_.cancel();
  send_timer_.cancel();
  check_timer_.cancel();
  credit_timer_.cancel();
  transport_->Close();
  assembler_.CancelAll(why);
  size_t head_bytes = scheduler_.queued_head_bytes();
  std::vector<SendDone> dropped;
  Release(scheduler_.Clear(&dropped), head_bytes);
  Status lost = Status::Unavailable(fmt::format("connection to {} closed: {}", Describe(), why.message()));
  FinishWrites(lost);  // in the unconfirmed last write
  FailDropped(std::move(dropped), lost);
  EMBER_LOG_DEBUG("connection {} to {} closed: {}", id_, Describe(), why.ToString());
  auto on_closed = std::move(callbacks_.on_closed);
  callbacks_ = {};
  if (on_closed) on_closed(shared_from_this(), why);
}

}  // namespace ember::net
