// TLS transports (OpenSSL 3; contexts configured through asio::ssl::context): a Transport
// over a TLS session, a dialer and a listener upgrade that run the handshake under a
// deadline, and the peer's proven identity (docs/security.md). TLS 1.2 is the floor; 1.3
// is negotiated when both ends can.
//
// The session drives OpenSSL on the asio socket itself instead of using asio::ssl::stream,
// whose engine moves one <= 17 KB record per socket operation: here up to 1 MiB of
// plaintext is encrypted into one socket write and one socket read of up to 256 KiB is
// decrypted into the caller's buffer (about 1.3x the throughput over an Ember connection
// on loopback, with less CPU; docs/security.md).
//
//   auto tls = MakeTlsContext(options, TlsSide::kServer).value();       // null when clear
//   TcpListener::Listen(pool, ":8002", on_accept, TlsAcceptUpgrade(tls, 10s));
//   DialSecure(io, "10.0.0.1:8002", 10s, client_tls, [](Result<std::unique_ptr<Transport>> t) {});
//
// Thread-safety: a TlsContext is immutable once made and may be shared by any number of
// connections on any threads. A TlsTransport follows the Transport rules (one io thread).
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "base/status.h"
#include "net/security.h"
#include "net/tcp.h"
#include "net/transport.h"

namespace ember::net {

enum class TlsSide { kServer, kClient };

// An OpenSSL context for one side of one mode, with its certificate, key and CA loaded.
class TlsContext {
 public:
  // Loads what `options.mode` needs on `side` (see SecurityOptions). Missing, unreadable or
  // mismatched files fail here, naming the file. REQUIRES: options.mode != kClear.
  static Result<std::shared_ptr<TlsContext>> Create(const SecurityOptions& options, TlsSide side);

  SecurityMode mode() const { return mode_; }
  TlsSide side() const { return side_; }
  asio::ssl::context& native() { return context_; }

  TlsContext(SecurityMode mode, TlsSide side);  // use Create()

 private:
  Status Load(const SecurityOptions& options);

  const SecurityMode mode_;
  const TlsSide side_;
  asio::ssl::context context_;
};

// Null for kClear (callers then use plain TCP), else TlsContext::Create.
Result<std::shared_ptr<TlsContext>> MakeTlsContext(const SecurityOptions& options, TlsSide side);

class TlsSession;  // tls.cc: the OpenSSL state machine over the socket

// A Transport over an established TLS session (made by HandshakeTls / DialTls).
class TlsTransport final : public Transport {
 public:
  explicit TlsTransport(std::shared_ptr<TlsSession> session);
  ~TlsTransport() override;  // closes the socket if still open
  asio::any_io_executor executor() override;
  // Fills as much of `buffer` as the ciphertext at hand allows. A peer that closes
  // (with or without TLS close_notify) reads as eof, like plain TCP.
  void AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) override;
  void AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) override;
  // Encrypts and writes up to 256 KiB, then reports it.
  void AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) override;
  // Closes the socket without close_notify (the frame protocol's GOAWAY ends a link).
  void Close() override;
  const std::string& remote_address() const override;
  PeerIdentity peer_identity() const override;

 private:
  std::shared_ptr<TlsSession> session_;  // shared with its pending socket handlers
};

// Runs the handshake for context->side() over a connected socket. Calls `done` exactly
// once, on the socket's io thread: the transport, or kDeadlineExceeded after `timeout`,
// or kFailedPrecondition naming the peer address and the OpenSSL reason ("TLS handshake
// with 10.0.0.7:51234 failed: certificate verify failed: unable to get local issuer
// certificate"), or kUnavailable if the peer hung up.
void HandshakeTls(std::shared_ptr<TlsContext> context, asio::ip::tcp::socket socket,
                  std::chrono::milliseconds timeout, DialDone done);

// TCP connect then client handshake; `timeout` bounds both together.
// REQUIRES: context->side() == kClient.
void DialTls(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
             std::shared_ptr<TlsContext> context, DialDone done);

// DialTcp when `tls` is null, else DialTls.
void DialSecure(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
                std::shared_ptr<TlsContext> tls, DialDone done);

// For TcpListener::Listen: null (plain TCP) when `tls` is null, else a server handshake per
// accepted socket, bounded by `timeout`. REQUIRES: tls is null or its side is kServer.
SocketUpgrade TlsAcceptUpgrade(std::shared_ptr<TlsContext> tls, std::chrono::milliseconds timeout);

}  // namespace ember::net
