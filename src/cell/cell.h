// Cell: one named endpoint of the Ember network (docs/wire-format.md). A cell may listen
// for children and may connect to one parent; messages are routed by FQCN: to itself,
// to a connected child whose name is a prefix of the destination, else to the parent.
// A cell in the middle relays a large body as it arrives, holding at most one
// flow-control window of it (docs/wire-format.md §8, "Relays").
//
//   auto server = Cell::Start({.name = "server", .listen = "127.0.0.1:0"}).value();
//   server->Handle("echo", [](Message m, Responder r) { r.Reply(m.h(), m.body); });
//   auto site = Cell::Start({.name = "site-1", .parent = server->listen_address()}).value();
//   Result<Message> reply = site->Request("server", Message::Make("echo"), 10s);
//
// Thread-safety: all public methods are thread-safe. Handlers run on the cell's worker
// threads (never on an io thread) and must not block for long: keep the Responder and
// reply later instead. Request() blocks its caller and must not be called from a handler.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/config.h"
#include "base/status.h"
#include "cell/message.h"
#include "net/security.h"

namespace ember::cell {

struct CellOptions {
  std::string name;            // this cell's FQCN, e.g. "server", "site-1", "site-1.<job_id>"
  std::string listen;          // "host:port" to accept children on ("127.0.0.1:0" = any port); empty = none
  std::string parent;          // "host:port" of the parent cell; empty = root
  std::string token;           // HELLO token children must present; empty = none required
  std::string parent_token;    // token this cell presents to its parent
  // connection_security (docs/security.md): `security` for the listener (server side of the
  // handshake), `parent_security` for the link to the parent. Default clear. Under TLS a
  // peer whose certificate was verified must use its certificate CN as its name's first part.
  net::SecurityOptions security;
  net::SecurityOptions parent_security;
  int io_threads = 1;                                // asio io threads
  int worker_threads = 2;                            // handler threads
  // One connection attempt (connect, TLS, HELLO); 0: the config's connect_timeout.
  std::chrono::milliseconds connect_timeout{0};
  // Transport and cell settings (docs/config.md: streaming_chunk_size,
  // streaming_window_size, max_body_size, the stall guards, heartbeats, connect_timeout,
  // reconnect backoff, goaway_linger). Null: loaded by Start() with
  // base::Config::FromEnvironment() ($EMBER_CONFIG file, EMBER_* variables).
  std::shared_ptr<const base::Config> config;
};

// Replies to one request, exactly once; later calls are ignored. Copyable; may outlive
// the handler call and be used from any thread. If the cell stops first, Reply is a no-op.
// If every copy is dropped without a reply, the requester gets an `internal` error at once
// (rather than waiting for its timeout). Fire messages get an empty Responder (no-op).
class Responder {
 public:
  class Impl;
  Responder() = default;
  explicit Responder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  void Reply(Json h = Json::object(), std::shared_ptr<BodySource> body = nullptr);
  void Error(StatusCode code, std::string message);
  // The requesting cell's FQCN.
  std::string peer() const;

 private:
  std::shared_ptr<Impl> impl_;
};

// Consumes a request's body while it streams in (chunk-wise aggregation, downloads):
// Write gets each chunk in order, on a cell worker (never two at once); Finish runs when
// every byte was written; Cancel when the stream broke or a Write/Finish failed.
class BodyConsumer {
 public:
  virtual ~BodyConsumer() = default;
  virtual Status Write(std::span<const uint8_t> chunk) = 0;
  virtual Status Finish() = 0;
  virtual void Cancel(const Status& why) {}
};

class Cell {
 public:
  using Handler = std::function<void(Message request, Responder responder)>;
  // Called at the HEAD of a streamed request (body still to come) on an io thread: must
  // be quick. An error refuses the request with that status.
  using StreamHandler = std::function<Result<std::unique_ptr<BodyConsumer>>(const Message& head)>;
  using PeerCallback = std::function<void(const std::string& peer, bool connected)>;

  virtual ~Cell() = default;
  // Starts io threads, listens and/or connects. Fails if the listen address cannot be
  // bound or the parent is not reachable within connect_timeout.
  static Result<std::shared_ptr<Cell>> Start(CellOptions options);

  virtual const std::string& name() const = 0;
  // "127.0.0.1:<port>" actually bound (empty if not listening).
  virtual std::string listen_address() const = 0;

  // Registers the handler for `topic` (req and fire messages). Register before traffic.
  virtual void Handle(std::string topic, Handler handler) = 0;
  // Registers a streamed handler for `topic`: requests addressed to this cell stream their
  // body into the consumer `on_head` makes, chunk by chunk, with flow control (a slow
  // consumer holds the sender back; at most one window is queued). When the consumer
  // finished, `on_complete` runs like a Handler with an empty body; if the consumer
  // failed, the requester gets its error instead. Register before traffic.
  virtual void HandleStream(std::string topic, StreamHandler on_head, Handler on_complete) = 0;
  // Called when a direct peer (child or parent) connects or disconnects.
  virtual void OnPeer(PeerCallback callback) = 0;

  // Sends a request to `dst` and waits for the reply. The reply's non-OK status is
  // returned as the Status: timeout -> kDeadlineExceeded, unreachable / connection lost /
  // cell stopped -> kUnavailable, no_handler -> kUnimplemented, a remote Error(code, ..)
  // -> that code.
  virtual Result<Message> Request(const std::string& dst, Message request,
                                  std::chrono::milliseconds timeout) = 0;
  // Same, but calls `done` (on a worker thread) instead of blocking.
  virtual void RequestAsync(const std::string& dst, Message request, std::chrono::milliseconds timeout,
                            std::function<void(Result<Message>)> done) = 0;
  // Fire-and-forget. Fails only if `dst` has no route right now.
  virtual Status Fire(const std::string& dst, Message message) = 0;

  // Stops accepting, fails pending requests with kUnavailable, closes connections and
  // joins the threads. Idempotent. Also runs when the last shared_ptr<Cell> is released.
  // Called from a handler, it returns at once and finishes on a helper thread.
  virtual void Stop() = 0;
};

}  // namespace ember::cell
