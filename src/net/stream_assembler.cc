#include "net/stream_assembler.h"

#include <fmt/format.h>

#include "base/log.h"

namespace ember::net {

using wire::Frame;
using wire::FrameType;

StreamAssembler::StreamAssembler(Limits limits, StreamSinkFactory factory)
    : limits_(limits), factory_(std::move(factory)) {
  if (!factory_) {
    factory_ = [](const wire::Json&, uint64_t size) { return MakeBufferingSink(size); };
  }
}

StreamAssembler::~StreamAssembler() { CancelAll(Status::Aborted("connection gone")); }

Status StreamAssembler::OnFrame(Frame frame, std::vector<IncomingMessage>* out) {
  switch (frame.header.type) {
    case FrameType::kHead: return OnHead(frame, out);
    case FrameType::kData: return OnData(frame, out);
    case FrameType::kAbort: OnAbort(frame); return Status::Ok();
    default:
      return Status::Internal(fmt::format("{} frame is not a stream frame",
                                          wire::FrameTypeName(frame.header.type)));
  }
}

Status StreamAssembler::OnHead(Frame& frame, std::vector<IncomingMessage>* out) {
  uint32_t id = frame.header.stream_id;
  if (streams_.contains(id)) return Status::InvalidArgument(fmt::format("HEAD reopens stream {}", id));
  if (streams_.size() >= limits_.max_open_streams) {
    return Status::ResourceExhausted(
        fmt::format("more than {} incoming streams open", limits_.max_open_streams));
  }
  EMBER_ASSIGN_OR_RETURN(wire::Json head, wire::ParseJsonObject(frame.payload, "HEAD"));
  EMBER_ASSIGN_OR_RETURN(uint64_t body_size, wire::ReadBodySize(head));
  if (frame.header.end() && body_size > 0) {
    return Status::InvalidArgument(
        fmt::format("HEAD of stream {} has END but body_size {}", id, body_size));
  }
  Stream& s = streams_[id];
  s.body_size = body_size;
  if (body_size > limits_.max_body_size) {
    Reject(s, Status::ResourceExhausted(fmt::format("body of {} bytes exceeds the limit of {}",
                                                    body_size, limits_.max_body_size)));
  } else if (auto sink = factory_(head, body_size); sink.ok()) {
    s.sink = std::move(*sink);
  } else {
    Reject(s, sink.status());
  }
  s.header = std::move(head);
  if (frame.header.end()) Complete(id, out);
  return Status::Ok();
}

Status StreamAssembler::OnData(Frame& frame, std::vector<IncomingMessage>* out) {
  uint32_t id = frame.header.stream_id;
  auto it = streams_.find(id);
  if (it == streams_.end()) return Status::InvalidArgument(fmt::format("DATA for unknown stream {}", id));
  Stream& s = it->second;
  uint64_t n = frame.payload.size();
  if (n > s.body_size - s.received) {
    return Status::InvalidArgument(fmt::format("stream {} sends more than its body_size {}", id,
                                               s.body_size));
  }
  s.received += n;
  if (s.sink) {
    Status st = s.sink->Write({reinterpret_cast<const uint8_t*>(frame.payload.data()), n});
    if (!st.ok()) Reject(s, st);
  }
  if (!frame.header.end()) return Status::Ok();
  if (s.received != s.body_size) {
    return Status::InvalidArgument(fmt::format("stream {} ended after {} of {} body bytes", id,
                                               s.received, s.body_size));
  }
  Complete(id, out);
  return Status::Ok();
}

void StreamAssembler::OnAbort(const Frame& frame) {
  auto it = streams_.find(frame.header.stream_id);
  if (it == streams_.end()) return;  // already complete: the abort crossed our END
  auto info = wire::DecodeAbort(frame.payload);
  Status why = Status::Aborted(info.ok() ? fmt::format("{}: {}", info->code, info->message)
                                         : std::string("peer aborted the stream"));
  EMBER_LOG_DEBUG("stream {} aborted by peer: {}", frame.header.stream_id, why.message());
  if (it->second.sink) it->second.sink->Cancel(why);
  streams_.erase(it);
}

void StreamAssembler::Reject(Stream& s, Status why) {
  if (s.sink) s.sink->Cancel(why);
  s.sink.reset();
  s.status = std::move(why);
}

void StreamAssembler::Complete(uint32_t stream_id, std::vector<IncomingMessage>* out) {
  auto node = streams_.extract(stream_id);
  Stream& s = node.mapped();
  IncomingMessage m{.header = std::move(s.header), .body = nullptr, .status = s.status};
  if (s.sink) {
    auto body = s.sink->Finish();
    if (body.ok()) m.body = std::move(*body);
    else m.status = body.status();
  }
  out->push_back(std::move(m));
}

void StreamAssembler::CancelAll(const Status& why) {
  for (auto& [id, s] : streams_) {
    if (s.sink) s.sink->Cancel(why);
  }
  streams_.clear();
}

}  // namespace ember::net
