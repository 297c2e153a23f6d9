#include "net/connection.h"

#include <asio/post.hpp>
#include <fmt/format.h>

#include "base/log.h"
#include "net/asio_status.h"

namespace ember::net {
namespace {

constexpr size_t kReadBufferBytes = 256 << 10;
// Small frames are batched into one write up to this size; a DATA chunk goes alone.
constexpr size_t kWriteBatchBytes = 64 << 10;

std::atomic<uint64_t> g_next_connection_id{1};

}  // namespace

using wire::FrameType;

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
      executor_(transport->executor()),
      transport_(std::move(transport)),
      callbacks_(std::move(callbacks)),
      assembler_({.max_body_size = options_.max_body_size,
                  .max_open_streams = options_.max_incoming_streams},
                 options_.sink_factory),
      scheduler_(options_.chunk_size),
      read_buf_(kReadBufferBytes),
      timer_(executor_) {}

Connection::~Connection() = default;

std::string Connection::peer_name() const {
  std::lock_guard lock(name_mu_);
  return peer_name_;
}

std::string Connection::Describe() const {
  std::string name = peer_name();
  return name.empty() ? remote_address_ : fmt::format("{} ({})", name, remote_address_);
}

// ---- public, any thread -------------------------------------------------------------

void Connection::Start() {
  asio::post(executor_, [self = shared_from_this()] { self->DoStart(); });
}

Status Connection::Send(wire::Json header, std::shared_ptr<const wire::BodySource> body) {
  if (closed_.load()) return Status::Unavailable(fmt::format("connection to {} is closed", Describe()));
  header["body_size"] = body ? body->size() : 0;
  std::string head = wire::DumpJson(header);
  if (head.size() > wire::kMaxHeaderBytes) {
    return Status::InvalidArgument(fmt::format("message header of {} bytes exceeds the limit of {}",
                                               head.size(), wire::kMaxHeaderBytes));
  }
  EMBER_RETURN_IF_ERROR(Admit(head.size()));
  asio::post(executor_, [self = shared_from_this(), head = std::move(head), body = std::move(body)]() mutable {
    if (self->state_ == State::kClosed || self->state_ == State::kClosing) {
      return self->Release(1, head.size());
    }
    self->scheduler_.AddMessage(std::move(head), std::move(body));
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
  if (role_ == ConnectionRole::kConnector) {
    scheduler_.AddControl(FrameType::kHello, wire::EncodeHello({.name = options_.local_name,
                                                                .version = wire::kProtocolVersion,
                                                                .token = options_.token}));
  }
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
  std::vector<wire::Frame> frames;
  Status status = decoder_.Feed({read_buf_.data(), n}, &frames);
  for (wire::Frame& frame : frames) {
    if (state_ != State::kHandshake && state_ != State::kOpen) return;
    Status fs = HandleFrame(std::move(frame));
    if (!fs.ok()) {
      status = fs;
      break;
    }
  }
  if (!status.ok()) {
    EMBER_LOG_WARN("closing the connection to {}: protocol error: {}", Describe(), status.ToString());
    return DoShutdown(status.WithContext(fmt::format("protocol error from {}", Describe())),
                      "protocol error: " + status.message());
  }
  if (state_ == State::kHandshake || state_ == State::kOpen) StartRead();
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
      MaybeWrite();
      return Status::Ok();
    case FrameType::kPong:
    case FrameType::kCredit:  // liveness and flow control arrive with issue 3
      return Status::Ok();
    case FrameType::kGoaway:
      return OnGoaway(frame);
  }
  return Status::Ok();
}

Status Connection::OnHello(const wire::Frame& frame) {
  EMBER_ASSIGN_OR_RETURN(wire::Hello hello, wire::DecodeHello(frame.payload));
  if (role_ == ConnectionRole::kAcceptor) {
    if (!options_.required_token.empty() && !wire::TokensEqual(hello.token, options_.required_token)) {
      EMBER_LOG_WARN("refusing '{}' from {}: bad token", hello.name, remote_address_);
      DoShutdown(Status::FailedPrecondition(fmt::format("refused '{}' from {}: bad token", hello.name,
                                                        remote_address_)),
                 "bad token");
      return Status::Ok();
    }
    scheduler_.AddControl(FrameType::kHello, wire::EncodeHello({.name = options_.local_name,
                                                                .version = wire::kProtocolVersion,
                                                                .token = ""}));
  }
  {
    std::lock_guard lock(name_mu_);
    peer_name_ = hello.name;
  }
  state_ = State::kOpen;
  timer_.cancel();
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

void Connection::MaybeWrite() {
  if (writing_ || state_ == State::kClosed) return;
  write_buf_.clear();
  bool allow_streams = state_ == State::kOpen;
  while (write_buf_.size() < kWriteBatchBytes) {
    size_t before = write_buf_.size();
    auto a = scheduler_.AppendNext(&write_buf_, allow_streams);
    if (!a) break;
    size_t head_bytes = a->type == FrameType::kHead ? write_buf_.size() - before - wire::kFrameHeaderSize : 0;
    Release(a->message_done ? 1 : 0, head_bytes);
    if (!a->error.ok()) EMBER_LOG_WARN("to {}: {}", Describe(), a->error.ToString());
    if (a->type == FrameType::kGoaway) {
      close_after_write_ = true;
      break;
    }
  }
  if (write_buf_.empty()) return;
  writing_ = true;
  transport_->AsyncWrite(write_buf_, [self = shared_from_this()](const std::error_code& ec, size_t) {
    self->OnWritten(ec);
  });
}

void Connection::OnWritten(const std::error_code& ec) {
  writing_ = false;
  if (state_ == State::kClosed) return;
  if (ec) return CloseNow(StatusFromAsio(ec, "write to " + Describe()));
  if (close_after_write_) return CloseNow(close_status_);
  MaybeWrite();
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
  transport_->Close();
  assembler_.CancelAll(why);
  size_t head_bytes = scheduler_.queued_head_bytes();
  Release(scheduler_.Clear(), head_bytes);
  EMBER_LOG_DEBUG("connection {} to {} closed: {}", id_, Describe(), why.ToString());
  auto on_closed = std::move(callbacks_.on_closed);
  callbacks_ = {};
  if (on_closed) on_closed(shared_from_this(), why);
}

}  // namespace ember::net
