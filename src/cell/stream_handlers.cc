// CellImpl: where incoming bodies stream to: streamed handlers (Cell::HandleStream), relays
// of messages passing through (relay_sink.h), else a buffer. See cell_impl.h for the layout.
#include <fmt/format.h>

#include "base/log.h"
#include "cell/cell_impl.h"
#include "cell/consumer_sink.h"

namespace ember::cell {

using wire::MessageKind;

void CellImpl::HandleStream(std::string topic, StreamHandler on_head, Handler on_complete) {
  std::lock_guard lock(mu_);
  if (!stopping_) stream_handlers_[std::move(topic)] = {std::move(on_head), std::move(on_complete)};
}

// Messages passing through with more than one chunk of body are relayed as they arrive;
// small ones are buffered and forwarded whole at END (Forward), as are malformed headers,
// which OnMessage then reports.
Result<std::unique_ptr<net::StreamSink>> CellImpl::MakeSink(const wire::Json& head, uint64_t body_size,
                                                            const net::Connection::Ptr& from) {
  auto fields = wire::ReadMessageFields(head);
  if (!fields.ok()) return net::MakeBufferingSink(body_size);
  if (!fields->dst.empty() && fields->dst != options_.name) {
    if (body_size <= relay_min_body_) return net::MakeBufferingSink(body_size);
    return RelaySink(from, std::move(*fields), head, body_size);
  }
  if (fields->kind == MessageKind::kReply) return net::MakeBufferingSink(body_size);
  return MakeConsumerSinkFor(*fields, head, body_size);
}

// A consumer sink if `f.topic` has a streamed handler, else the buffering sink.
Result<std::unique_ptr<net::StreamSink>> CellImpl::MakeConsumerSinkFor(const wire::MessageFields& f,
                                                                       const wire::Json& head, uint64_t body_size) {
  StreamTopic topic;
  {
    std::lock_guard lock(mu_);
    auto it = stream_handlers_.find(f.topic);
    if (it == stream_handlers_.end()) return net::MakeBufferingSink(body_size);
    topic = it->second;
  }
  Message message;
  message.header = head;
  if (message.header.value("src", "").empty()) message.header["src"] = f.src;
  EMBER_ASSIGN_OR_RETURN(std::unique_ptr<BodyConsumer> consumer, topic.on_head(message));
  Responder responder;
  if (f.kind == MessageKind::kRequest) {
    responder = Responder(std::make_shared<Responder::Impl>(
        weak_from_this(), ReplyTarget{.src = f.src, .req_id = f.req_id, .topic = f.topic}));
  }
  auto done = [on_complete = topic.on_complete, message, responder](Status s) mutable {
    if (!s.ok()) return responder.Error(s.code(), s.message());
    on_complete(std::move(message), std::move(responder));
  };
  std::weak_ptr<CellImpl> weak = weak_from_this();
  auto post = [weak](std::function<void()> task) {
    auto self = weak.lock();
    return self && self->workers_.Post(std::move(task), /*bounded=*/false);
  };
  return MakeConsumerSink(std::move(consumer), std::move(post), std::move(done));
}

}  // namespace ember::cell
