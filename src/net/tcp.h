// TCP transports: a Transport over an asio socket, a dialer with a deadline and a
// listener that spreads accepted sockets over an IoPool.
//
//   auto listener = TcpListener::Listen(pool, "127.0.0.1:0", on_accept).value();
//   DialTcp(pool.Next(), listener->local_address(), 5s, [](Result<std::unique_ptr<Transport>> t) {});
//
// Thread-safety: DialTcp and TcpListener's methods may be called from any thread;
// callbacks run on io threads. A TcpTransport follows the Transport rules.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "base/status.h"
#include "net/io_pool.h"
#include "net/transport.h"

namespace ember::net {

// "host:port" or "[v6addr]:port" -> {host, port}.
Result<std::pair<std::string, std::string>> SplitHostPort(const std::string& address);
// "1.2.3.4:80" / "[::1]:80".
std::string FormatEndpoint(const asio::ip::tcp::endpoint& endpoint);

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(asio::ip::tcp::socket socket);
  asio::any_io_executor executor() override { return socket_.get_executor(); }
  void AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) override;
  void AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) override;
  void AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) override;
  void Close() override;
  const std::string& remote_address() const override { return remote_; }

 private:
  asio::ip::tcp::socket socket_;
  std::string remote_;
};

using DialDone = std::function<void(Result<std::unique_ptr<Transport>>)>;
// Resolves and connects to `address` on `io`; calls `done` exactly once, on that io
// thread, with the transport or the error (kDeadlineExceeded after `timeout`).
void DialTcp(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
             DialDone done);
// Same, handing over the connected socket (for a transport layered on it, e.g. TLS).
using SocketDone = std::function<void(Result<asio::ip::tcp::socket>)>;
void DialTcpSocket(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
                   SocketDone done);

// Turns a freshly accepted socket into a Transport, possibly asynchronously (a TLS
// handshake); calls `done` exactly once, on the socket's io thread.
using SocketUpgrade = std::function<void(asio::ip::tcp::socket socket, DialDone done)>;

class TcpListener : public std::enable_shared_from_this<TcpListener> {
 public:
  using AcceptFn = std::function<void(std::unique_ptr<Transport>)>;

  // Binds and listens on `address`; each accepted socket is placed on the next context
  // of `pool` and handed to `on_accept` (on an io thread) as a TcpTransport, or first
  // through `upgrade` if set (a socket whose upgrade fails is logged and dropped).
  // REQUIRES: `pool` outlives the accept loop (call Close() before stopping the pool).
  static Result<std::shared_ptr<TcpListener>> Listen(IoPool& pool, const std::string& address,
                                                     AcceptFn on_accept, SocketUpgrade upgrade = nullptr);
  TcpListener(IoPool& pool, AcceptFn on_accept, SocketUpgrade upgrade = nullptr);
  // Stops accepting and closes the socket. Idempotent, thread-safe.
  void Close();
  // "host:port" actually bound.
  const std::string& local_address() const { return local_; }

 private:
  Status Bind(const std::string& address);
  void AcceptNext();
  void OnAccept(const std::error_code& ec, asio::ip::tcp::socket socket);

  IoPool& pool_;
  AcceptFn on_accept_;
  SocketUpgrade upgrade_;  // null: plain TCP
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::string local_;
};

}  // namespace ember::net
