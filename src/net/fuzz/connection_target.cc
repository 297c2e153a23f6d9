// Target 4: a whole Connection, its peer played by the fuzz input through an in-memory
// Transport (no socket, no thread: the io_context runs on the caller's thread).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <string>

#include "net/connection.h"
#include "net/fuzz/fuzz_targets.h"
#include "wire/frame_decoder.h"

namespace ember::fuzz {
namespace {

using wire::FrameType;

// Reads return the planned chunks of the stream, then end-of-file; writes succeed at once
// and are kept so the test can see what the connection told its peer.
class ScriptedTransport final : public net::Transport {
 public:
  ScriptedTransport(asio::io_context& io, const SplitPlan& plan, std::string* written)
      : io_(io), stream_(plan.stream), chunks_(plan.chunks), written_(written) {}

  asio::any_io_executor executor() override { return io_.get_executor(); }

  void AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) override {
    while (next_ < chunks_.size() && chunk_left_ == 0) chunk_left_ = chunks_[next_++];
    std::error_code ec;
    size_t n = 0;
    if (closed_) ec = asio::error::operation_aborted;
    else if (chunk_left_ == 0) ec = asio::error::eof;
    else n = std::min(chunk_left_, buffer.size());
    std::copy_n(stream_.begin(), n, buffer.begin());
    stream_ = stream_.subspan(n);
    chunk_left_ -= n;
    asio::post(io_, [handler = std::move(handler), ec, n] { handler(ec, n); });
  }

  void AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) override {
    std::error_code ec = closed_ ? asio::error::operation_aborted : std::error_code();
    if (!closed_) written_->append(reinterpret_cast<const char*>(buffer.data()), buffer.size());
    asio::post(io_, [handler = std::move(handler), ec, n = buffer.size()] { handler(ec, n); });
  }

  void Close() override { closed_ = true; }
  const std::string& remote_address() const override { return address_; }

 private:
  asio::io_context& io_;
  std::span<const uint8_t> stream_;
  std::vector<size_t> chunks_;
  size_t next_ = 0;
  size_t chunk_left_ = 0;
  bool closed_ = false;
  std::string* written_;
  std::string address_ = "fuzz-peer:0";
};

// Counts warnings instead of printing them (the fuzzer would drown in them).
class CountingSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  int warnings = 0;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (msg.level >= spdlog::level::warn) ++warnings;
  }
  void flush_() override {}
};

// The frames the connection wrote; the last GOAWAY's reason, if it sent one.
struct Sent {
  bool goaway = false;
  std::string reason;
};
Sent ReadWritten(const std::string& written) {
  wire::FrameDecoder decoder;
  std::vector<wire::Frame> frames;
  Status s = decoder.Feed({reinterpret_cast<const uint8_t*>(written.data()), written.size()}, &frames);
  EMBER_FUZZ_CHECK(s.ok() && decoder.Finish().ok(), "connection wrote bad frames: {}", s.ToString());
  Sent sent;
  for (const wire::Frame& f : frames) {
    if (f.header.type != FrameType::kGoaway) continue;
    Result<std::string> reason = wire::DecodeGoaway(f.payload);
    EMBER_FUZZ_CHECK(reason.ok(), "connection wrote an unreadable GOAWAY");
    sent = {.goaway = true, .reason = *reason};
  }
  return sent;
}

}  // namespace

void FuzzConnection(std::span<const uint8_t> data) {
  SplitPlan plan = PlanSplits(data);
  // Option bit 0: we accept (and answer HELLO) rather than connect; bit 1: as acceptor,
  // require a token.
  bool acceptor = plan.options & 1;
  net::ConnectionOptions options{.local_name = acceptor ? "server" : "site-1",
                                 .required_token = acceptor && (plan.options & 2) ? "s3cret" : "",
                                 .goaway_linger = std::chrono::milliseconds(50)};

  auto sink = std::make_shared<CountingSink>();
  auto logger = std::make_shared<spdlog::logger>("fuzz", sink);
  logger->set_level(spdlog::level::warn);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);

  asio::io_context io;
  std::string written;
  int closes = 0, after_close = 0;
  Status why;
  net::Connection::Callbacks callbacks{
      .on_ready = [&](const net::Connection::Ptr&) { after_close += closes; },
      .on_message = [&](const net::Connection::Ptr&, net::IncomingMessage) { after_close += closes; },
      .on_closed = [&](const net::Connection::Ptr&, const Status& s) {
        ++closes;
        why = s;
      }};
  {
    auto connection = net::Connection::Create(std::make_unique<ScriptedTransport>(io, plan, &written),
                                              acceptor ? net::ConnectionRole::kAcceptor
                                                       : net::ConnectionRole::kConnector,
                                              options, std::move(callbacks));
    connection->Start();
    io.run_for(std::chrono::seconds(5));
  }
  spdlog::set_default_logger(previous);

  EMBER_FUZZ_CHECK(closes == 1, "on_closed ran {} times after the peer's end of file", closes);
  EMBER_FUZZ_CHECK(after_close == 0, "a callback ran after on_closed");
  EMBER_FUZZ_CHECK(!why.ok() && !why.message().empty(), "closed with '{}'", why.ToString());
  Sent sent = ReadWritten(written);
  if (sent.goaway) {
    // We refused the peer: it is told why, and so is our log.
    EMBER_FUZZ_CHECK(!sent.reason.empty(), "GOAWAY without a reason (closed with {})", why.ToString());
    EMBER_FUZZ_CHECK(sink->warnings > 0, "refused the peer without logging why: {}", why.ToString());
  }
}

}  // namespace ember::fuzz
