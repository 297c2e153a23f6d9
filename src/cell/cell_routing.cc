// CellImpl messaging: routing (docs/wire-format.md §3), forwarding and relaying,
// request/reply correlation, fire-and-forget and handler dispatch.
#include <asio/post.hpp>
#include <fmt/format.h>

#include <future>

#include "base/log.h"
#include "cell/cell_impl.h"
#include "cell/consumer_sink.h"
#include "cell/relay_sink.h"

namespace ember::cell {

using namespace std::chrono_literals;
using wire::MessageKind;

namespace {

void CancelTimer(const std::shared_ptr<asio::steady_timer>& timer) {
  if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

}  // namespace

// Self if dst is this cell; else the connected child whose name is dst or a dot-prefix of
// it (longest wins); else the parent, unless dst lies under this cell's own name. Never
// back over the connection the message arrived on.
CellImpl::Route CellImpl::RouteFor(const std::string& dst, uint64_t arrived_on) const {
  if (dst == options_.name) return {Route::kSelf, nullptr};
  std::lock_guard lock(mu_);
  net::Connection::Ptr best;
  size_t best_len = 0;
  for (const auto& [child, conn] : children_) {
    if (child.size() > best_len && wire::IsSameOrUnder(dst, child)) {
      best = conn;
      best_len = child.size();
    }
  }
  if (!best && parent_ && !wire::IsSameOrUnder(dst, options_.name)) best = parent_;
  if (!best || best->id() == arrived_on) return {Route::kNone, nullptr};
  return {Route::kPeer, best};
}

Json CellImpl::BaseHeader(std::string_view kind, const std::string& dst) const {
  return {{"kind", kind}, {"src", options_.name}, {"dst", dst}, {"hops", 0}};
}

// ---- outgoing -----------------------------------------------------------------------

Result<Message> CellImpl::Request(const std::string& dst, Message request, std::chrono::milliseconds timeout) {
  auto result = std::make_shared<std::promise<Result<Message>>>();
  RequestAsync(dst, std::move(request), timeout, [result](Result<Message> r) { result->set_value(std::move(r)); });
  auto f = result->get_future();
  // The request's own timer completes it; this bound only guards against a bug here.
  if (f.wait_for(timeout + 5s) != std::future_status::ready) {
    return Status::DeadlineExceeded(fmt::format("{}: request to '{}' never completed", options_.name, dst));
  }
  return f.get();
}

void CellImpl::RequestAsync(const std::string& dst, Message request, std::chrono::milliseconds timeout,
                            std::function<void(Result<Message>)> done) {
  std::string what = fmt::format("request '{}' from {} to {}", request.topic(), options_.name, dst);
  if (stopping_) return done(Status::Unavailable(what + ": cell stopped"));
  Route route = RouteFor(dst, 0);
  if (route.kind == Route::kNone) {
    return RunCompletion(std::move(done), Status::Unavailable(what + ": no route (unreachable)"));
  }
  uint64_t req_id = next_req_id_.fetch_add(1);
  Json header = request.header.is_object() ? std::move(request.header) : Json::object();
  header.update(BaseHeader("req", dst));  // routing fields win over the caller's
  header["req_id"] = req_id;
  auto timer = std::make_shared<asio::steady_timer>(io_->Next());
  pending_.Add(req_id, {.done = std::move(done), .timer = timer,
                        .conn_id = route.conn ? route.conn->id() : 0, .what = what});
  ArmTimer(req_id, timer, timeout);
  if (route.kind == Route::kSelf) {
    auto fields = wire::ReadMessageFields(header);
    if (fields.ok()) return Dispatch(*fields, Message{std::move(header), std::move(request.body)});
    return CompleteRequest(req_id, fields.status().WithContext(what));
  }
  if (Status s = route.conn->Send(std::move(header), std::move(request.body)); !s.ok()) {
    CompleteRequest(req_id, s.WithContext(what));
  }
}

void CellImpl::ArmTimer(uint64_t req_id, const std::shared_ptr<asio::steady_timer>& timer,
                        std::chrono::milliseconds timeout) {
  std::weak_ptr<CellImpl> weak = weak_from_this();
  asio::post(timer->get_executor(), [weak, timer, timeout, req_id] {
    timer->expires_after(timeout);
    timer->async_wait([weak, req_id, timeout](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->CompleteRequest(req_id, Status::DeadlineExceeded(fmt::format("no reply within {} ms", timeout.count())));
    });
  });
}

Status CellImpl::Fire(const std::string& dst, Message message) {
  if (stopping_) return Status::Unavailable(fmt::format("{}: cell stopped", options_.name));
  Json header = message.header.is_object() ? std::move(message.header) : Json::object();
  header.update(BaseHeader("fire", dst));
  Route route = RouteFor(dst, 0);
  if (route.kind == Route::kNone) {
    return Status::Unavailable(fmt::format("{}: no route to '{}' (unreachable)", options_.name, dst));
  }
  if (route.kind == Route::kSelf) {
    EMBER_ASSIGN_OR_RETURN(wire::MessageFields f, wire::ReadMessageFields(header));
    Dispatch(f, Message{std::move(header), std::move(message.body)});
    return Status::Ok();
  }
  return route.conn->Send(std::move(header), std::move(message.body));
}

void CellImpl::SendReply(const ReplyTarget& target, std::string_view status, std::string error, Json h,
                         std::shared_ptr<BodySource> body) {
  if (stopping_) return;
  Json header = BaseHeader("reply", target.src);
  header["topic"] = target.topic;
  header["req_id"] = target.req_id;
  header["status"] = status;
  if (status != wire::kStatusOk) header["error"] = std::move(error);
  header["h"] = h.is_null() ? Json::object() : std::move(h);
  Route route = RouteFor(target.src, 0);
  if (route.kind == Route::kSelf) {
    Message reply{std::move(header), std::move(body)};
    Status s = reply.status();
    return CompleteRequest(target.req_id, s.ok() ? Result<Message>(std::move(reply)) : Result<Message>(s));
  }
  if (route.kind == Route::kNone) {
    EMBER_LOG_WARN("{}: no route for the reply to '{}' from {}", options_.name, target.topic, target.src);
    return;
  }
  if (Status s = route.conn->Send(std::move(header), std::move(body)); !s.ok()) {
    EMBER_LOG_WARN("{}: reply to '{}' from {} not sent: {}", options_.name, target.topic, target.src, s.ToString());
  }
}

// ---- incoming (io thread) -----------------------------------------------------------

void CellImpl::OnMessage(const net::Connection::Ptr& conn, net::IncomingMessage in) {
  // Its sink handled it already: a streamed handler's consumer, or a relay that forwarded it.
  if (in.body && dynamic_cast<const ConsumedBody*>(in.body.get())) return;
  auto fields = wire::ReadMessageFields(in.header);
  if (!fields.ok()) {
    EMBER_LOG_WARN("{}: dropping a message from {}: {}", options_.name, conn->peer_name(),
                   fields.status().ToString());
    return;
  }
  if (fields->src.empty()) {  // a direct peer that did not say who it is: it is the peer
    fields->src = conn->peer_name();
    in.header["src"] = fields->src;
  }
  if (fields->dst.empty() || fields->dst == options_.name) return Deliver(*fields, std::move(in));
  Forward(conn, *fields, std::move(in));
}

// A message passing through whose body (at most one chunk) arrived whole.
void CellImpl::Forward(const net::Connection::Ptr& from, const wire::MessageFields& f, net::IncomingMessage in) {
  if (!in.status.ok()) {
    return ReplyError(f, wire::WireStatusName(in.status.code()),
                      fmt::format("{}: {}", options_.name, in.status.message()));
  }
  net::Connection::Ptr next = NextHopOrReply(from, f);
  if (!next) return;
  in.header["hops"] = f.hops + 1;
  if (Status s = next->Send(std::move(in.header), std::move(in.body)); !s.ok()) {
    ReplyError(f, wire::kStatusClosed, fmt::format("{}: forwarding to {}: {}", options_.name, f.dst, s.message()));
  }
}

// At the HEAD of a larger body passing through (io thread of `from`): the HEAD goes on at
// once and the DATA follows as it arrives. If it cannot be forwarded, the requester is
// answered now and the body is dropped as it arrives.
std::unique_ptr<net::StreamSink> CellImpl::RelaySink(const net::Connection::Ptr& from, wire::MessageFields f,
                                                     wire::Json head, uint64_t body_size) {
  if (f.src.empty()) {  // as in OnMessage: a direct peer that did not say who it is
    f.src = from->peer_name();
    head["src"] = f.src;
  }
  net::Connection::Ptr next = NextHopOrReply(from, f);
  if (!next) return MakeDiscardingSink();
  std::weak_ptr<CellImpl> weak = weak_from_this();
  Relay relay = MakeRelay(body_size, [weak, f](const Status& why) {
    if (auto self = weak.lock()) self->ReplyRelayFailed(f, why);
  });
  head["hops"] = f.hops + 1;
  if (Status s = next->Send(std::move(head), relay.body, std::move(relay.on_sent)); !s.ok()) {
    ReplyError(f, wire::kStatusClosed, fmt::format("{}: forwarding to {}: {}", options_.name, f.dst, s.message()));
    return MakeDiscardingSink();
  }
  EMBER_LOG_DEBUG("{}: relaying '{}' from {} to {} ({} bytes)", options_.name, f.topic, f.src, f.dst, body_size);
  return std::move(relay.sink);
}

// The next hop of a message passing through; null (the requester answered) if it has
// none or would exceed the hop limit.
net::Connection::Ptr CellImpl::NextHopOrReply(const net::Connection::Ptr& from, const wire::MessageFields& f) {
  if (f.hops + 1 > wire::kMaxHops) {
    EMBER_LOG_WARN("{}: dropping '{}' from {} to {}: more than {} hops", options_.name, f.topic, f.src, f.dst,
                   wire::kMaxHops);
    ReplyError(f, wire::kStatusUnreachable, fmt::format("{}: hop limit exceeded", options_.name));
    return nullptr;
  }
  Route route = RouteFor(f.dst, from->id());
  if (route.kind != Route::kPeer) {
    ReplyError(f, wire::kStatusUnreachable, fmt::format("{}: no route to '{}'", options_.name, f.dst));
    return nullptr;
  }
  return route.conn;
}

// A relayed stream broke downstream (aborted, starved of credit, connection closed).
void CellImpl::ReplyRelayFailed(const wire::MessageFields& f, const Status& why) {
  if (stopping_) return;  // every relay breaks at shutdown; nobody to answer
  EMBER_LOG_WARN("{}: relaying '{}' from {} to {} failed: {}", options_.name, f.topic, f.src, f.dst,
                 why.ToString());
  std::string_view status = why.code() == StatusCode::kUnavailable ? wire::kStatusClosed
                                                                    : wire::WireStatusName(why.code());
  ReplyError(f, status, fmt::format("{}: forwarding to {}: {}", options_.name, f.dst, why.message()));
}

void CellImpl::Deliver(const wire::MessageFields& f, net::IncomingMessage in) {
  if (f.kind == MessageKind::kReply) {
    Message reply{std::move(in.header), std::move(in.body)};
    Status s = in.status.ok() ? reply.status() : in.status;
    return CompleteRequest(f.req_id, s.ok() ? Result<Message>(std::move(reply)) : Result<Message>(s));
  }
  if (!in.status.ok()) {  // body refused here (too large, sink failed)
    return ReplyError(f, wire::WireStatusName(in.status.code()),
                      fmt::format("{}: {}", options_.name, in.status.message()));
  }
  Dispatch(f, Message{std::move(in.header), std::move(in.body)});
}

void CellImpl::Dispatch(const wire::MessageFields& f, Message message) {
  Handler handler;
  {
    std::lock_guard lock(mu_);
    auto it = handlers_.find(f.topic);
    if (it != handlers_.end()) handler = it->second;
  }
  if (!handler) {
    EMBER_LOG_DEBUG("{}: no handler for '{}' from {}", options_.name, f.topic, f.src);
    return ReplyError(f, wire::kStatusNoHandler,
                      fmt::format("{} has no handler for topic '{}'", options_.name, f.topic));
  }
  Responder responder;
  if (f.kind == MessageKind::kRequest) {
    responder = Responder(std::make_shared<Responder::Impl>(
        weak_from_this(), ReplyTarget{.src = f.src, .req_id = f.req_id, .topic = f.topic}));
  }
  bool queued = workers_.Post([handler = std::move(handler), message = std::move(message), responder]() mutable {
    handler(std::move(message), std::move(responder));
  });
  if (!queued) responder.Error(StatusCode::kUnavailable, options_.name + " is overloaded or stopping");
}

void CellImpl::ReplyError(const wire::MessageFields& f, std::string_view status, std::string error) {
  if (f.kind != MessageKind::kRequest) return;  // fires and replies get no answer
  SendReply(ReplyTarget{.src = f.src, .req_id = f.req_id, .topic = f.topic}, status, std::move(error),
            Json::object(), nullptr);
}

// ---- completion ---------------------------------------------------------------------

void CellImpl::CompleteRequest(uint64_t req_id, Result<Message> result) {
  std::optional<PendingRequest> p = pending_.Take(req_id);
  if (!p) return;  // already timed out, failed or answered
  CancelTimer(p->timer);
  if (!result.ok()) result = result.status().WithContext(p->what);
  RunCompletion(std::move(p->done), std::move(result));
}

void CellImpl::FailRequests(std::vector<PendingRequest> requests, const Status& why) {
  for (PendingRequest& p : requests) {
    CancelTimer(p.timer);
    RunCompletion(std::move(p.done), why.WithContext(p.what));
  }
}

void CellImpl::RunCompletion(std::function<void(Result<Message>)> done, Result<Message> result) {
  auto task = [done, result]() { done(result); };
  if (!workers_.Post(task, /*bounded=*/false)) task();  // workers gone: complete here
}

}  // namespace ember::cell
