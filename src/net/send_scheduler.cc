#include "net/send_scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "wire/message_header.h"

namespace ember::net {

using wire::FrameType;
using wire::kFrameHeaderSize;

void AppendFrame(std::vector<uint8_t>* out, FrameType type, uint16_t flags, uint32_t stream_id,
                 std::string_view payload) {
  size_t at = out->size();
  out->resize(at + kFrameHeaderSize + payload.size());
  wire::EncodeFrameHeader({.type = type, .flags = flags, .stream_id = stream_id,
                           .length = static_cast<uint32_t>(payload.size())},
                          std::span<uint8_t>(out->data() + at, kFrameHeaderSize));
  if (!payload.empty()) std::memcpy(out->data() + at + kFrameHeaderSize, payload.data(), payload.size());
}

SendScheduler::SendScheduler(size_t chunk_size)
    : chunk_size_(std::clamp<size_t>(chunk_size, 1, wire::kMaxFramePayload)) {}

void SendScheduler::AddControl(FrameType type, std::string payload) {
  control_.push_back({type, std::move(payload)});
}

uint32_t SendScheduler::AddMessage(std::string head_json, std::shared_ptr<const wire::BodySource> body) {
  uint64_t size = body ? body->size() : 0;
  uint32_t id = NextStreamId();
  head_bytes_ += head_json.size();
  heads_.push_back({.id = id, .head = std::move(head_json), .body = std::move(body), .size = size,
                    .offset = 0});
  return id;
}

uint32_t SendScheduler::NextStreamId() {
  uint32_t id = next_stream_id_++;
  if (next_stream_id_ == 0) next_stream_id_ = 1;  // 0 is the connection itself
  return id;
}

std::optional<SendScheduler::Appended> SendScheduler::AppendNext(std::vector<uint8_t>* out,
                                                                 bool allow_streams) {
  if (!control_.empty()) return AppendControl(out);
  if (!allow_streams) return std::nullopt;
  if (!heads_.empty()) return AppendHead(out);
  if (!bodies_.empty()) return AppendData(out);
  return std::nullopt;
}

SendScheduler::Appended SendScheduler::AppendControl(std::vector<uint8_t>* out) {
  Control c = std::move(control_.front());
  control_.pop_front();
  AppendFrame(out, c.type, 0, 0, c.payload);
  return {.type = c.type, .stream_id = 0, .message_done = false, .error = {}};
}

SendScheduler::Appended SendScheduler::AppendHead(std::vector<uint8_t>* out) {
  OutStream s = std::move(heads_.front());
  heads_.pop_front();
  head_bytes_ -= s.head.size();
  bool end = s.size == 0;
  AppendFrame(out, FrameType::kHead, end ? wire::kFlagEnd : 0, s.id, s.head);
  s.head.clear();
  s.head.shrink_to_fit();
  uint32_t id = s.id;
  // A body that fits in one chunk goes next: small messages never wait behind a big one.
  if (!end && s.size <= chunk_size_) bodies_.push_front(std::move(s));
  else if (!end) bodies_.push_back(std::move(s));
  return {.type = FrameType::kHead, .stream_id = id, .message_done = end, .error = {}};
}

SendScheduler::Appended SendScheduler::AppendData(std::vector<uint8_t>* out) {
  OutStream s = std::move(bodies_.front());
  bodies_.pop_front();
  size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size_, s.size - s.offset));
  size_t at = out->size();
  out->resize(at + kFrameHeaderSize + n);
  Result<size_t> got = s.body->ReadAt(s.offset, std::span<uint8_t>(out->data() + at + kFrameHeaderSize, n));
  if (!got.ok() || *got != n) {
    out->resize(at);
    Status why = got.ok() ? Status::DataLoss(fmt::format("body ended at {} of {} bytes",
                                                         s.offset + *got, s.size))
                          : got.status();
    why = why.WithContext(fmt::format("reading the body of stream {}", s.id));
    AppendFrame(out, FrameType::kAbort, 0, s.id,
                wire::EncodeAbort({.code = "internal", .message = why.message()}));
    return {.type = FrameType::kAbort, .stream_id = s.id, .message_done = true, .error = why};
  }
  s.offset += n;
  bool end = s.offset == s.size;
  wire::EncodeFrameHeader({.type = FrameType::kData, .flags = static_cast<uint16_t>(end ? wire::kFlagEnd : 0),
                           .stream_id = s.id, .length = static_cast<uint32_t>(n)},
                          std::span<uint8_t>(out->data() + at, kFrameHeaderSize));
  uint32_t id = s.id;
  if (!end) bodies_.push_back(std::move(s));
  return {.type = FrameType::kData, .stream_id = id, .message_done = end, .error = {}};
}

size_t SendScheduler::Clear() {
  size_t dropped = queued_messages();
  head_bytes_ = 0;
  control_.clear();
  heads_.clear();
  bodies_.clear();
  return dropped;
}

}  // namespace ember::net
