#include "net/stream_assembler.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/log.h"

namespace ember::net {

using wire::Frame;
using wire::FrameType;

StreamAssembler::StreamAssembler(Limits limits, StreamSinkFactory factory, CreditHooks hooks)
    : limits_(limits),
      factory_(std::move(factory)),
      hooks_(std::move(hooks)),
      grant_threshold_(std::max<uint64_t>(1, limits.window / 4)) {
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
  s.serial = next_serial_++;
  s.body_size = body_size;
  s.limit = std::min(body_size, limits_.window);
  if (body_size > limits_.max_body_size) {
    Reject(id, s, Status::ResourceExhausted(fmt::format("body of {} bytes exceeds the limit of {}",
                                                        body_size, limits_.max_body_size)));
  } else if (auto sink = factory_(head, body_size); sink.ok()) {
    s.sink = std::move(*sink);
    OpenSink(id, s);
  } else {
    Reject(id, s, sink.status());
  }
  s.header = std::move(head);
  if (frame.header.end()) Complete(id, out);
  return Status::Ok();
}

void StreamAssembler::OpenSink(uint32_t id, Stream& s) {
  s.policy = s.sink->credit_policy();
  if (s.policy == CreditPolicy::kWholeBody) return Release(id, s, s.body_size);
  if (s.policy == CreditPolicy::kManual && hooks_.make_handle) {
    s.sink->BindCredit(hooks_.make_handle(id, s.serial));
  }
}

void StreamAssembler::Release(uint32_t id, Stream& s, uint64_t consumed) {
  s.consumed = std::max(s.consumed, std::min(consumed, s.body_size));
  uint64_t target = std::min(s.body_size, s.consumed + std::min(limits_.window, s.body_size));
  if (target <= s.limit) return;
  if (target - s.limit < grant_threshold_ && target != s.body_size) return;
  uint64_t grant = target - s.limit;
  s.limit = target;
  if (hooks_.grant) hooks_.grant(id, grant);
}

void StreamAssembler::OnConsumed(uint32_t stream_id, uint64_t serial, uint64_t bytes) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end() || it->second.serial != serial) return;  // ended meanwhile
  Stream& s = it->second;
  Release(stream_id, s, std::min(s.received, s.consumed + bytes));
}

uint64_t StreamAssembler::unconsumed_bytes() const {
  uint64_t total = 0;
  for (const auto& [id, s] : streams_) total += s.received - std::min(s.received, s.consumed);
  return total;
}

Status StreamAssembler::OnData(Frame& frame, std::vector<IncomingMessage>* out) {
  EMBER_RETURN_IF_ERROR(BeginData(frame.header));
  DataPiece({reinterpret_cast<const uint8_t*>(frame.payload.data()), frame.payload.size()});
  return EndData(frame.header, out);
}

Status StreamAssembler::BeginData(const wire::FrameHeader& header) {
  uint32_t id = header.stream_id;
  auto it = streams_.find(id);
  if (it == streams_.end()) return Status::InvalidArgument(fmt::format("DATA for unknown stream {}", id));
  Stream& s = it->second;
  uint64_t n = header.length;
  if (n > s.body_size - s.received) {
    return Status::InvalidArgument(fmt::format("stream {} sends more than its body_size {}", id,
                                               s.body_size));
  }
  if (n > s.limit - s.received) {
    return Status::InvalidArgument(fmt::format(
        "stream {} sends beyond its flow-control credit: {} bytes received, {} granted", id,
        s.received + n, s.limit));
  }
  data_stream_ = &s;
  data_stream_id_ = id;
  return Status::Ok();
}

void StreamAssembler::DataPiece(std::span<const uint8_t> piece) {
  Stream& s = *data_stream_;
  s.received += piece.size();
  if (s.sink) {
    Status st = s.sink->Write(piece);
    if (!st.ok()) Reject(data_stream_id_, s, st);
  }
  if (!s.sink || s.policy == CreditPolicy::kOnWrite) Release(data_stream_id_, s, s.received);
}

Status StreamAssembler::EndData(const wire::FrameHeader& header, std::vector<IncomingMessage>* out) {
  Stream& s = *data_stream_;
  data_stream_ = nullptr;
  if (!header.end()) return Status::Ok();
  if (s.received != s.body_size) {
    return Status::InvalidArgument(fmt::format("stream {} ended after {} of {} body bytes", header.stream_id,
                                               s.received, s.body_size));
  }
  Complete(header.stream_id, out);
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

// The rest of a rejected body is read and dropped, so all of it counts as consumed.
void StreamAssembler::Reject(uint32_t id, Stream& s, Status why) {
  if (s.sink) s.sink->Cancel(why);
  s.sink.reset();
  s.status = std::move(why);
  Release(id, s, s.received);
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
  data_stream_ = nullptr;
  for (auto& [id, s] : streams_) {
    if (s.sink) s.sink->Cancel(why);
  }
  streams_.clear();
}

}  // namespace ember::net
