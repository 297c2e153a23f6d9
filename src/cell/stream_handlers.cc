// CellImpl: streamed handlers (Cell::HandleStream). See cell_impl.h for the layout.
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

Result<std::unique_ptr<net::StreamSink>> CellImpl::MakeSink(const wire::Json& head, uint64_t body_size) {
  auto fields = wire::ReadMessageFields(head);
  if (!fields.ok() || fields->kind == MessageKind::kReply ||
      (!fields->dst.empty() && fields->dst != options_.name)) {
    return net::MakeBufferingSink(body_size);  // replies, and messages passing through
  }
  StreamTopic topic;
  {
    std::lock_guard lock(mu_);
    auto it = stream_handlers_.find(fields->topic);
    if (it == stream_handlers_.end()) return net::MakeBufferingSink(body_size);
    topic = it->second;
  }
  Message message;
  message.header = head;
  if (message.header.value("src", "").empty()) message.header["src"] = fields->src;
  EMBER_ASSIGN_OR_RETURN(std::unique_ptr<BodyConsumer> consumer, topic.on_head(message));
  Responder responder;
  if (fields->kind == MessageKind::kRequest) {
    responder = Responder(std::make_shared<Responder::Impl>(
        weak_from_this(), ReplyTarget{.src = fields->src, .req_id = fields->req_id, .topic = fields->topic}));
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
