// CellImpl: the Cell behind Cell::Start (see cell.h for the contract). Internal header.
//
// Layout of the implementation:
//   cell_impl.cc      life cycle: start, stop, connections to children and parent,
//                     reconnecting to the parent
//   cell_routing.cc   routing, forwarding, requests/replies/fires, handler dispatch
//   stream_handlers.cc   the sink each incoming body streams into: a streamed handler's
//                     consumer, a relay to the next hop (relay_sink.h), or a buffer
//   cell.cc           Cell::Start, Responder
//
// Threading: connection callbacks arrive on io threads and only route, forward or post to
// the worker pool; handlers and completions run on workers. Shared state is guarded by
// mu_ (or is atomic, or lives in PendingRequests). Async callbacks hold weak_ptrs to the
// cell; the user's shared_ptr<Cell> owns it and its deleter runs Stop() on the user's
// thread, so a cell is never destroyed on one of its own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cell/cell.h"
#include "cell/pending_requests.h"
#include "cell/worker_pool.h"
#include "net/connection.h"
#include "net/io_pool.h"
#include "net/tcp.h"
#include "net/tls.h"
#include "wire/message_header.h"

namespace ember::cell {

// Where a reply goes: the requester and its request.
struct ReplyTarget {
  std::string src;
  uint64_t req_id = 0;
  std::string topic;
};

class CellImpl;

class Responder::Impl {
 public:
  Impl(std::weak_ptr<CellImpl> cell, ReplyTarget target);
  // A request whose responders are all dropped unanswered gets an "internal" error
  // reply, so the requester learns at once instead of waiting for its timeout.
  ~Impl();
  void Send(std::string_view status, std::string error, Json h, std::shared_ptr<BodySource> body);
  const ReplyTarget& target() const { return target_; }

 private:
  std::weak_ptr<CellImpl> cell_;
  ReplyTarget target_;
  std::atomic<bool> replied_{false};
};

class CellImpl final : public Cell, public std::enable_shared_from_this<CellImpl> {
 public:
  explicit CellImpl(CellOptions options);
  ~CellImpl() override;

  // Listens and/or connects to the parent; blocks up to about 2 x connect_timeout.
  Status Init();

  const std::string& name() const override { return options_.name; }
  std::string listen_address() const override { return listen_address_; }
  void Handle(std::string topic, Handler handler) override;
  void HandleStream(std::string topic, StreamHandler on_head, Handler on_complete) override;
  void OnPeer(PeerCallback callback) override;
  Result<Message> Request(const std::string& dst, Message request,
                          std::chrono::milliseconds timeout) override;
  void RequestAsync(const std::string& dst, Message request, std::chrono::milliseconds timeout,
                    std::function<void(Result<Message>)> done) override;
  Status Fire(const std::string& dst, Message message) override;
  void Stop() override;

  // Sends a reply to `target` (from any thread). `status` is a §4 status string.
  void SendReply(const ReplyTarget& target, std::string_view status, std::string error, Json h,
                 std::shared_ptr<BodySource> body);

 private:
  enum class PeerRole { kChild, kParent };
  struct Route {
    enum Kind { kNone, kSelf, kPeer } kind = kNone;
    net::Connection::Ptr conn;
  };
  struct ParentAttempt;
  // The connection a sink factory's streams arrive on: set right after Connection::Create,
  // before Start, so every HEAD sees it.
  struct Arrival {
    std::weak_ptr<net::Connection> conn;
  };

  // cell_impl.cc: life cycle and connections.
  Status LoadTls();
  Status StartListening();
  Status ConnectParentBlocking();
  void DialParent(std::function<void(Status)> done);
  void ScheduleReconnect();
  void OnAccept(std::unique_ptr<net::Transport> transport);
  // Creates a connection over `transport`, registered in connections_ (not started).
  net::Connection::Ptr NewConnection(std::unique_ptr<net::Transport> transport, PeerRole role,
                                     std::shared_ptr<ParentAttempt> attempt);
  net::ConnectionOptions ConnectionOptionsFor(PeerRole role, std::shared_ptr<Arrival> arrival) const;
  // stream_handlers.cc: the sink for a HEAD that arrived on `from`: a relay if it passes
  // through, a consumer sink if it is addressed to a streamed topic of this cell, else
  // the buffering sink.
  Result<std::unique_ptr<net::StreamSink>> MakeSink(const wire::Json& head, uint64_t body_size,
                                                    const net::Connection::Ptr& from);
  Result<std::unique_ptr<net::StreamSink>> MakeConsumerSinkFor(const wire::MessageFields& f,
                                                               const wire::Json& head, uint64_t body_size);
  net::Connection::Callbacks CallbacksFor(PeerRole role, std::shared_ptr<ParentAttempt> attempt);
  void OnReady(const net::Connection::Ptr& conn, PeerRole role);
  void OnClosed(const net::Connection::Ptr& conn, PeerRole role, const Status& why);
  void NotifyPeer(const std::string& peer, bool connected);
  void StopNow();
  void CloseConnections();
  bool OnOwnThread() const;

  // cell_routing.cc: messages.
  Route RouteFor(const std::string& dst, uint64_t arrived_on) const;
  void OnMessage(const net::Connection::Ptr& conn, net::IncomingMessage in);
  void Forward(const net::Connection::Ptr& from, const wire::MessageFields& f, net::IncomingMessage in);
  // A large body passing through: sends its HEAD on at once and relays its DATA as it
  // arrives (relay_sink.h). Small bodies are forwarded whole by Forward at END.
  std::unique_ptr<net::StreamSink> RelaySink(const net::Connection::Ptr& from, wire::MessageFields f,
                                            wire::Json head, uint64_t body_size);
  net::Connection::Ptr NextHopOrReply(const net::Connection::Ptr& from, const wire::MessageFields& f);
  void ReplyRelayFailed(const wire::MessageFields& f, const Status& why);
  void Deliver(const wire::MessageFields& f, net::IncomingMessage in);
  void Dispatch(const wire::MessageFields& f, Message message);
  void CompleteRequest(uint64_t req_id, Result<Message> result);
  void FailRequests(std::vector<PendingRequest> requests, const Status& why);
  void RunCompletion(std::function<void(Result<Message>)> done, Result<Message> result);
  void ArmTimer(uint64_t req_id, const std::shared_ptr<asio::steady_timer>& timer,
                std::chrono::milliseconds timeout);
  Json BaseHeader(std::string_view kind, const std::string& dst) const;
  void ReplyError(const wire::MessageFields& f, std::string_view status, std::string error);

  const CellOptions options_;
  std::unique_ptr<net::IoPool> io_;  // before anything holding asio objects: destroyed after them
  WorkerPool workers_;
  PendingRequests pending_;
  std::atomic<uint64_t> next_req_id_{1};
  std::atomic<bool> stopping_{false};
  std::shared_ptr<net::TcpListener> listener_;  // set in Init, reset in StopNow
  std::string listen_address_;                  // immutable after Init
  std::shared_ptr<const base::Config> config_;  // non-null (Cell::Start resolves it); immutable
  std::shared_ptr<net::TlsContext> listen_tls_;  // null: clear; immutable after Init
  std::shared_ptr<net::TlsContext> parent_tls_;  // null: clear; immutable after Init
  uint64_t relay_min_body_ = 0;  // larger bodies passing through are relayed as they arrive; set in Init

  mutable std::mutex mu_;
  std::condition_variable closed_cv_;                                       // connections_ shrank
  std::unordered_map<std::string, Handler> handlers_;                       // guarded by mu_
  struct StreamTopic {
    StreamHandler on_head;
    Handler on_complete;
  };
  std::unordered_map<std::string, StreamTopic> stream_handlers_;            // guarded by mu_
  std::vector<PeerCallback> peer_callbacks_;                                // guarded by mu_
  std::map<std::string, net::Connection::Ptr> children_;                    // guarded by mu_
  net::Connection::Ptr parent_;                                             // guarded by mu_
  std::unordered_map<uint64_t, net::Connection::Ptr> connections_;          // guarded by mu_
  std::shared_ptr<asio::steady_timer> reconnect_timer_;                     // guarded by mu_
  std::chrono::milliseconds reconnect_backoff_;                             // guarded by mu_
  bool stop_started_ = false;                                               // guarded by mu_
};

}  // namespace ember::cell
