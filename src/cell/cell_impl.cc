// CellImpl life cycle: start, stop, child and parent connections, reconnecting.
#include "cell/cell_impl.h"

#include <asio/post.hpp>
#include <fmt/format.h>

#include <future>
#include <thread>

#include "base/log.h"

namespace ember::cell {
namespace {

using namespace std::chrono_literals;

constexpr size_t kMaxQueuedHandlers = 65536;

void CancelTimer(const std::shared_ptr<asio::steady_timer>& timer) {
  if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

// A peer that proved a certificate may only claim the name it was issued for: the first
// part of its FQCN ("site-1" of "site-1.<job>") must equal the certificate CN, so one
// site cannot pose as another. `required`: the link's mode guarantees a certificate.
Status CheckCertificateName(const std::string& name, const net::PeerIdentity& id, bool required) {
  if (!id.verified && !required) return Status::Ok();
  std::string_view first = std::string_view(name).substr(0, name.find('.'));
  if (id.verified && first == id.common_name) return Status::Ok();
  return Status::FailedPrecondition(fmt::format("the name '{}' does not match its certificate (CN '{}')", name,
                                                id.verified ? id.common_name : "none verified"));
}

}  // namespace

// One attempt to connect to the parent: `done` fires once, at HELLO or at failure.
struct CellImpl::ParentAttempt {
  explicit ParentAttempt(std::function<void(Status)> d) : done(std::move(d)) {}
  void Fire(const Status& s) {
    if (!fired.exchange(true)) done(s);
  }
  std::function<void(Status)> done;
  std::atomic<bool> fired{false};
};

CellImpl::CellImpl(CellOptions options)
    : options_(std::move(options)),
      io_(std::make_unique<net::IoPool>(options_.io_threads)),
      workers_(options_.worker_threads, kMaxQueuedHandlers),
      config_(options_.config),
      reconnect_backoff_(config_->Get(base::kReconnectInitialBackoff)) {}

CellImpl::~CellImpl() { Stop(); }

Status CellImpl::Init() {
  if (!wire::IsValidFqcn(options_.name)) {
    return Status::InvalidArgument(fmt::format("cell name '{}' is not a valid FQCN", options_.name));
  }
  relay_min_body_ = config_->Get(base::kStreamingChunkSize);
  EMBER_RETURN_IF_ERROR(LoadTls());
  if (!options_.listen.empty()) EMBER_RETURN_IF_ERROR(StartListening());
  if (!options_.parent.empty()) EMBER_RETURN_IF_ERROR(ConnectParentBlocking());
  return Status::Ok();
}

Status CellImpl::LoadTls() {
  if (!options_.listen.empty()) {
    auto tls = net::MakeTlsContext(options_.security, net::TlsSide::kServer);
    if (!tls.ok()) return tls.status().WithContext(options_.name + ": listener security");
    listen_tls_ = *tls;
  }
  if (!options_.parent.empty()) {
    auto tls = net::MakeTlsContext(options_.parent_security, net::TlsSide::kClient);
    if (!tls.ok()) return tls.status().WithContext(options_.name + ": parent security");
    parent_tls_ = *tls;
  }
  return Status::Ok();
}

Status CellImpl::StartListening() {
  std::weak_ptr<CellImpl> weak = weak_from_this();
  auto listener = net::TcpListener::Listen(*io_, options_.listen, [weak](std::unique_ptr<net::Transport> t) {
    if (auto self = weak.lock()) self->OnAccept(std::move(t));
  }, net::TlsAcceptUpgrade(listen_tls_, options_.connect_timeout));
  if (!listener.ok()) return listener.status().WithContext(options_.name);
  listener_ = *listener;
  listen_address_ = listener_->local_address();
  EMBER_LOG_INFO("{}: listening on {} ({})", options_.name, listen_address_,
                 net::SecurityModeName(options_.security.mode));
  return Status::Ok();
}

Status CellImpl::ConnectParentBlocking() {
  auto result = std::make_shared<std::promise<Status>>();
  DialParent([result](Status s) { result->set_value(std::move(s)); });
  auto f = result->get_future();
  if (f.wait_for(options_.connect_timeout * 2 + 1s) != std::future_status::ready) {
    return Status::DeadlineExceeded(fmt::format("{}: no connection to the parent {} within {} ms",
                                                options_.name, options_.parent,
                                                options_.connect_timeout.count()));
  }
  return f.get().WithContext(fmt::format("{}: connect to the parent {}", options_.name, options_.parent));
}

void CellImpl::DialParent(std::function<void(Status)> done) {
  auto attempt = std::make_shared<ParentAttempt>(std::move(done));
  std::weak_ptr<CellImpl> weak = weak_from_this();
  net::DialSecure(io_->Next(), options_.parent, options_.connect_timeout, parent_tls_,
                  [weak, attempt](Result<std::unique_ptr<net::Transport>> t) {
                    auto self = weak.lock();
                    if (!self || self->stopping_) return attempt->Fire(Status::Unavailable("cell stopping"));
                    if (!t.ok()) return attempt->Fire(t.status());
                    self->NewConnection(std::move(*t), PeerRole::kParent, attempt)->Start();
                  });
}

void CellImpl::ScheduleReconnect() {
  auto timer = std::make_shared<asio::steady_timer>(io_->Next());
  std::chrono::milliseconds delay;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    delay = reconnect_backoff_;
    reconnect_backoff_ = std::min(reconnect_backoff_ * 2, config_->Get(base::kReconnectMaxBackoff));
    reconnect_timer_ = timer;
  }
  EMBER_LOG_INFO("{}: reconnecting to the parent {} in {} ms", options_.name, options_.parent, delay.count());
  std::weak_ptr<CellImpl> weak = weak_from_this();
  asio::post(timer->get_executor(), [weak, timer, delay] {
    timer->expires_after(delay);
    timer->async_wait([weak](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->stopping_) return;
      self->DialParent([weak](Status s) {
        auto self = weak.lock();
        if (!self || s.ok()) return;
        EMBER_LOG_WARN("{}: reconnect failed: {}", self->options_.name, s.ToString());
        self->ScheduleReconnect();
      });
    });
  });
}

void CellImpl::OnAccept(std::unique_ptr<net::Transport> transport) {
  if (stopping_) return transport->Close();
  NewConnection(std::move(transport), PeerRole::kChild, nullptr)->Start();
}

net::Connection::Ptr CellImpl::NewConnection(std::unique_ptr<net::Transport> transport, PeerRole role,
                                             std::shared_ptr<ParentAttempt> attempt) {
  auto arrival = std::make_shared<Arrival>();
  auto conn_role = role == PeerRole::kParent ? net::ConnectionRole::kConnector : net::ConnectionRole::kAcceptor;
  auto conn = net::Connection::Create(std::move(transport), conn_role, ConnectionOptionsFor(role, arrival),
                                      CallbacksFor(role, std::move(attempt)));
  arrival->conn = conn;
  std::lock_guard lock(mu_);
  connections_[conn->id()] = conn;
  return conn;
}

net::ConnectionOptions CellImpl::ConnectionOptionsFor(PeerRole role, std::shared_ptr<Arrival> arrival) const {
  net::ConnectionOptions o;
  o.local_name = options_.name;
  if (role == PeerRole::kParent) o.token = options_.parent_token;
  if (role == PeerRole::kChild) o.required_token = options_.token;
  net::ApplyConfig(*config_, &o);  // chunk, window, max_body_size, guards, heartbeats, linger
  o.handshake_timeout = options_.connect_timeout;
  std::weak_ptr<CellImpl> weak = std::const_pointer_cast<CellImpl>(shared_from_this());
  o.sink_factory = [weak, arrival](const wire::Json& head,
                                   uint64_t size) -> Result<std::unique_ptr<net::StreamSink>> {
    auto self = weak.lock();
    auto from = arrival->conn.lock();
    if (!self || !from) return net::MakeBufferingSink(size);
    return self->MakeSink(head, size, from);
  };
  bool cert_required = role == PeerRole::kParent ? options_.parent_security.mode != net::SecurityMode::kClear
                                                 : options_.security.mode == net::SecurityMode::kMtls;
  o.authorize_peer = [cert_required](const std::string& name, const net::PeerIdentity& id) {
    return CheckCertificateName(name, id, cert_required);
  };
  return o;
}

net::Connection::Callbacks CellImpl::CallbacksFor(PeerRole role, std::shared_ptr<ParentAttempt> attempt) {
  std::weak_ptr<CellImpl> weak = weak_from_this();
  return {
      .on_ready = [weak, role, attempt](const net::Connection::Ptr& c) {
        if (auto self = weak.lock()) self->OnReady(c, role);
        if (attempt) attempt->Fire(Status::Ok());
      },
      .on_message = [weak](const net::Connection::Ptr& c, net::IncomingMessage m) {
        if (auto self = weak.lock()) self->OnMessage(c, std::move(m));
      },
      .on_closed = [weak, role, attempt](const net::Connection::Ptr& c, const Status& why) {
        if (attempt) attempt->Fire(why);  // no-op once the handshake succeeded
        if (auto self = weak.lock()) self->OnClosed(c, role, why);
      },
  };
}

void CellImpl::OnReady(const net::Connection::Ptr& conn, PeerRole role) {
  std::string peer = conn->peer_name();
  net::Connection::Ptr replaced;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return conn->Shutdown("cell stopping");
    if (role == PeerRole::kParent) {
      replaced = std::exchange(parent_, conn);
      reconnect_backoff_ = config_->Get(base::kReconnectInitialBackoff);
    } else {
      replaced = std::exchange(children_[peer], conn);
    }
  }
  if (replaced) replaced->Shutdown("replaced by a newer connection from " + peer);
  EMBER_LOG_INFO("{}: {} {} connected from {}", options_.name,
                 role == PeerRole::kParent ? "parent" : "child", peer, conn->remote_address());
  NotifyPeer(peer, true);
}

void CellImpl::OnClosed(const net::Connection::Ptr& conn, PeerRole role, const Status& why) {
  std::string peer = conn->peer_name();
  bool was_current = false;
  {
    std::lock_guard lock(mu_);
    connections_.erase(conn->id());
    if (role == PeerRole::kParent && parent_ == conn) {
      parent_.reset();
      was_current = true;
    }
    auto it = children_.find(peer);
    if (role == PeerRole::kChild && it != children_.end() && it->second == conn) {
      children_.erase(it);
      was_current = true;
    }
  }
  closed_cv_.notify_all();
  FailRequests(pending_.TakeByConnection(conn->id()),
               Status::Unavailable(fmt::format("connection lost: {}", why.message())));
  if (!was_current) return;
  EMBER_LOG_INFO("{}: {} {} disconnected: {}", options_.name,
                 role == PeerRole::kParent ? "parent" : "child", peer, why.ToString());
  NotifyPeer(peer, false);
  if (role == PeerRole::kParent && !stopping_) ScheduleReconnect();
}

void CellImpl::NotifyPeer(const std::string& peer, bool connected) {
  std::vector<PeerCallback> callbacks;
  {
    std::lock_guard lock(mu_);
    callbacks = peer_callbacks_;
  }
  if (callbacks.empty()) return;
  workers_.Post([callbacks = std::move(callbacks), peer, connected] {
    for (const auto& cb : callbacks) cb(peer, connected);
  }, /*bounded=*/false);
}

void CellImpl::Handle(std::string topic, Handler handler) {
  std::lock_guard lock(mu_);
  if (!stopping_) handlers_[std::move(topic)] = std::move(handler);
}

void CellImpl::OnPeer(PeerCallback callback) {
  std::lock_guard lock(mu_);
  if (!stopping_) peer_callbacks_.push_back(std::move(callback));
}

bool CellImpl::OnOwnThread() const { return workers_.IsWorkerThread() || io_->IsIoThread(); }

void CellImpl::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_started_) return;
    stop_started_ = true;
    stopping_ = true;
  }
  if (OnOwnThread()) {
    // A handler stopping its own cell: cannot join the thread we are on.
    EMBER_LOG_WARN("{}: Stop() called from a handler; finishing on a helper thread", options_.name);
    std::thread([self = shared_from_this()] { self->StopNow(); }).detach();
    return;
  }
  StopNow();
}

// Shutdown order: stop accepting, fail pending requests, close connections (GOAWAY,
// bounded wait), drain the workers, stop the io threads.
void CellImpl::StopNow() {
  if (listener_) listener_->Close();
  {
    std::lock_guard lock(mu_);
    CancelTimer(reconnect_timer_);
  }
  FailRequests(pending_.TakeAll(), Status::Unavailable(fmt::format("cell {} stopped", options_.name)));
  CloseConnections();
  workers_.Stop();
  io_->Stop();
  // Handlers may capture the cell (a cycle): drop them, but outside mu_, since dropping
  // the last reference re-enters Stop().
  std::unordered_map<std::string, Handler> handlers;
  std::vector<PeerCallback> peer_callbacks;
  {
    std::lock_guard lock(mu_);
    handlers.swap(handlers_);
    peer_callbacks.swap(peer_callbacks_);
    connections_.clear();
    children_.clear();
    parent_.reset();
    reconnect_timer_.reset();
  }
  listener_.reset();
}

void CellImpl::CloseConnections() {
  std::unique_lock lock(mu_);
  for (auto& [id, conn] : connections_) conn->Shutdown("cell " + options_.name + " stopping");
  children_.clear();
  parent_.reset();
  closed_cv_.wait_for(lock, config_->Get(base::kGoawayLinger) + 500ms, [this] { return connections_.empty(); });
  if (!connections_.empty()) {
    EMBER_LOG_WARN("{}: {} connections still open at shutdown", options_.name, connections_.size());
  }
}

}  // namespace ember::cell
