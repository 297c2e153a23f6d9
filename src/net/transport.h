// Transport: the byte stream under a Connection (redis-style connection vtable). TCP now;
// TLS, Unix sockets and an in-memory fault-injecting double slot in behind it.
//
//   transport->AsyncReadSome(buf, [](std::error_code ec, size_t n) { ... });
//
// Thread-safety: not thread-safe. Every call, and every handler, runs on the transport's
// executor (one io thread); one read and one write may be outstanding at a time.
#pragma once

#include <asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <system_error>

#include "net/security.h"

namespace ember::net {

class Transport {
 public:
  using IoHandler = std::function<void(const std::error_code&, size_t)>;

  virtual ~Transport() = default;
  // The io thread this transport lives on.
  virtual asio::any_io_executor executor() = 0;
  // Reads at least one byte into `buffer`. REQUIRES: `buffer` outlives the call.
  virtual void AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) = 0;
  // Writes all of `buffer`. REQUIRES: `buffer` outlives the call.
  virtual void AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) = 0;
  // Writes at least one byte of `buffer` (handler gets how many), so the caller can see
  // a slow write make progress (streaming_send_timeout). The default writes it all.
  // REQUIRES: `buffer` outlives the call.
  virtual void AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) {
    AsyncWrite(buffer, std::move(handler));
  }
  // Cancels outstanding operations (their handlers see an error) and closes. Idempotent.
  virtual void Close() = 0;
  // "host:port" of the other end, for logs.
  virtual const std::string& remote_address() const = 0;
  // What the peer proved in a TLS handshake (net/tls.h); empty for plain transports.
  virtual PeerIdentity peer_identity() const { return {}; }
};

}  // namespace ember::net
