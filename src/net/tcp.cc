#include "net/tcp.h"

#include <asio/connect.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "base/log.h"
#include "net/asio_status.h"

namespace ember::net {
namespace {

using asio::ip::tcp;

// One dial attempt; every step runs on the io thread of `io`, so no lock is needed.
struct DialAttempt : std::enable_shared_from_this<DialAttempt> {
  DialAttempt(asio::io_context& io, std::string address, SocketDone done)
      : resolver(io), socket(io), timer(io), address(std::move(address)), done(std::move(done)) {}

  void Finish(Result<tcp::socket> result) {
    if (finished) return;
    finished = true;
    timer.cancel();
    done(std::move(result));
  }

  void Start(const std::string& host, const std::string& port, std::chrono::milliseconds timeout) {
    auto self = shared_from_this();
    timer.expires_after(timeout);
    timer.async_wait([self, timeout](const std::error_code& ec) {
      if (ec || self->finished) return;
      self->resolver.cancel();
      std::error_code ignored;
      self->socket.close(ignored);
      self->Finish(Status::DeadlineExceeded(
          fmt::format("connect to {}: no connection within {} ms", self->address, timeout.count())));
    });
    resolver.async_resolve(host, port, [self](const std::error_code& ec, tcp::resolver::results_type r) {
      self->OnResolved(ec, std::move(r));
    });
  }

  void OnResolved(const std::error_code& ec, tcp::resolver::results_type results) {
    if (finished) return;
    if (ec) return Finish(StatusFromAsio(ec, "resolve " + address));
    auto self = shared_from_this();
    asio::async_connect(socket, results, [self](const std::error_code& ec, const tcp::endpoint&) {
      if (self->finished) return;
      if (ec) return self->Finish(StatusFromAsio(ec, "connect to " + self->address));
      self->Finish(std::move(self->socket));
    });
  }

  tcp::resolver resolver;
  tcp::socket socket;
  asio::steady_timer timer;
  std::string address;
  SocketDone done;
  bool finished = false;
};

}  // namespace

Result<std::pair<std::string, std::string>> SplitHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return Status::InvalidArgument(fmt::format("address '{}' is not host:port", address));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  return std::make_pair(host, address.substr(colon + 1));
}

std::string FormatEndpoint(const tcp::endpoint& ep) {
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

TcpTransport::TcpTransport(tcp::socket socket) : socket_(std::move(socket)) {
  std::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  tcp::endpoint ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : FormatEndpoint(ep);
}

void TcpTransport::AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) {
  socket_.async_read_some(asio::buffer(buffer.data(), buffer.size()), std::move(handler));
}

void TcpTransport::AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) {
  asio::async_write(socket_, asio::buffer(buffer.data(), buffer.size()), std::move(handler));
}

void TcpTransport::AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) {
  socket_.async_write_some(asio::buffer(buffer.data(), buffer.size()), std::move(handler));
}

void TcpTransport::Close() {
  std::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

void DialTcp(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
             DialDone done) {
  DialTcpSocket(io, address, timeout, [done = std::move(done)](Result<tcp::socket> socket) {
    if (!socket.ok()) return done(socket.status());
    done(std::unique_ptr<Transport>(std::make_unique<TcpTransport>(std::move(*socket))));
  });
}

void DialTcpSocket(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
                   SocketDone done) {
  auto hp = SplitHostPort(address);
  auto attempt = std::make_shared<DialAttempt>(io, address, std::move(done));
  asio::post(io, [attempt, hp = std::move(hp), timeout]() mutable {
    if (!hp.ok()) return attempt->Finish(hp.status());
    attempt->Start(hp->first, hp->second, timeout);
  });
}

TcpListener::TcpListener(IoPool& pool, AcceptFn on_accept, SocketUpgrade upgrade)
    : pool_(pool), on_accept_(std::move(on_accept)), upgrade_(std::move(upgrade)), acceptor_(pool.Next()),
      retry_timer_(acceptor_.get_executor()) {}

Result<std::shared_ptr<TcpListener>> TcpListener::Listen(IoPool& pool, const std::string& address,
                                                         AcceptFn on_accept, SocketUpgrade upgrade) {
  auto listener = std::make_shared<TcpListener>(pool, std::move(on_accept), std::move(upgrade));
  EMBER_RETURN_IF_ERROR(listener->Bind(address));
  asio::post(listener->acceptor_.get_executor(), [listener] { listener->AcceptNext(); });
  return listener;
}

Status TcpListener::Bind(const std::string& address) {
  EMBER_ASSIGN_OR_RETURN(auto hp, SplitHostPort(address));
  std::error_code ec;
  asio::ip::address ip = asio::ip::make_address(hp.first, ec);
  if (ec) return StatusFromAsio(ec, fmt::format("listen on {}: bad host", address));
  int port = std::atoi(hp.second.c_str());
  tcp::endpoint ep(ip, static_cast<uint16_t>(port));
  acceptor_.open(ep.protocol(), ec);
  if (ec) return StatusFromAsio(ec, "listen on " + address);
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  acceptor_.bind(ep, ec);
  if (ec) return StatusFromAsio(ec, "bind " + address);
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return StatusFromAsio(ec, "listen on " + address);
  local_ = FormatEndpoint(acceptor_.local_endpoint(ec));
  return Status::Ok();
}

void TcpListener::AcceptNext() {
  if (!acceptor_.is_open()) return;
  auto self = shared_from_this();
  acceptor_.async_accept(pool_.Next(), [self](const std::error_code& ec, tcp::socket socket) {
    self->OnAccept(ec, std::move(socket));
  });
}

void TcpListener::OnAccept(const std::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec) {
    // E.g. out of file descriptors: back off instead of spinning.
    EMBER_LOG_WARN("{}", StatusFromAsio(ec, "accept on " + local_).ToString());
    auto self = shared_from_this();
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    retry_timer_.async_wait([self](const std::error_code& e) { if (!e) self->AcceptNext(); });
    return;
  }
  if (!upgrade_) {
    on_accept_(std::make_unique<TcpTransport>(std::move(socket)));
  } else {
    upgrade_(std::move(socket), [self = shared_from_this()](Result<std::unique_ptr<Transport>> t) {
      if (t.ok()) return self->on_accept_(std::move(*t));
      EMBER_LOG_WARN("refused a connection on {}: {}", self->local_, t.status().ToString());
    });
  }
  AcceptNext();
}

void TcpListener::Close() {
  auto self = shared_from_this();
  asio::post(acceptor_.get_executor(), [self] {
    std::error_code ignored;
    self->acceptor_.close(ignored);
    self->retry_timer_.cancel();
  });
}

}  // namespace ember::net
