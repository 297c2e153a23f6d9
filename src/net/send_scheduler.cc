#include "net/send_scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "wire/message_header.h"

namespace ember::net {

using wire::FrameType;
using wire::kFrameHeaderSize;

void AppendFrame(FrameBuffer* out, FrameType type, uint16_t flags, uint32_t stream_id,
                 std::string_view payload) {
  size_t at = out->size();
  out->resize(at + kFrameHeaderSize + payload.size());
  wire::EncodeFrameHeader({.type = type, .flags = flags, .stream_id = stream_id,
                           .length = static_cast<uint32_t>(payload.size())},
                          std::span<uint8_t>(out->data() + at, kFrameHeaderSize));
  if (!payload.empty()) std::memcpy(out->data() + at + kFrameHeaderSize, payload.data(), payload.size());
}

namespace {

SendScheduler::Appended Sent(FrameType type, uint32_t stream_id) {
  SendScheduler::Appended a;
  a.type = type;
  a.stream_id = stream_id;
  return a;
}

// The message's last frame: hands over its callback (and the error if it was aborted).
SendScheduler::Appended Finished(FrameType type, uint32_t stream_id, SendScheduler::Done done,
                                 Status error = Status::Ok()) {
  SendScheduler::Appended a = Sent(type, stream_id);
  a.message_done = true;
  a.error = std::move(error);
  a.done = std::move(done);
  return a;
}

}  // namespace

SendScheduler::SendScheduler(size_t chunk_size, WakeFactory wake)
    : chunk_size_(std::clamp<size_t>(chunk_size, 1, wire::kMaxFramePayload)), wake_(std::move(wake)) {}

void SendScheduler::AddControl(FrameType type, std::string payload) {
  control_.push_back({type, 0, std::move(payload)});
}

void SendScheduler::AddCredit(uint32_t stream_id, uint64_t bytes) {
  control_.push_back({FrameType::kCredit, stream_id, wire::EncodeCredit(bytes)});
}

void SendScheduler::AddAbort(uint32_t stream_id, std::string payload) {
  control_.push_back({FrameType::kAbort, stream_id, std::move(payload)});
}

uint32_t SendScheduler::AddMessage(std::string head_json, std::shared_ptr<const wire::BodySource> body,
                                   Done done) {
  uint64_t size = body ? body->size() : 0;
  uint32_t id = NextStreamId();
  head_bytes_ += head_json.size();
  OutStream& s = heads_.emplace_back();
  s.id = id;
  s.head = std::move(head_json);
  s.body = std::move(body);
  s.size = size;
  s.done = std::move(done);
  return id;
}

uint32_t SendScheduler::NextStreamId() {
  uint32_t id = next_stream_id_++;
  if (next_stream_id_ == 0) next_stream_id_ = 1;  // 0 is the connection itself
  return id;
}

void SendScheduler::SetPeerWindow(uint64_t window) {
  peer_window_ = window == 0 ? wire::kDefaultWindow : window;
}

void SendScheduler::OnCredit(uint32_t stream_id, uint64_t bytes) {
  auto it = bodies_.find(stream_id);
  if (it == bodies_.end()) return;
  OutStream& s = it->second;
  s.limit = bytes > s.size - s.limit ? s.size : s.limit + bytes;
  if (!s.ready && !s.waiting) Continue(s);
}

void SendScheduler::OnBodyAvailable(uint32_t stream_id) {
  auto it = bodies_.find(stream_id);
  if (it == bodies_.end() || !it->second.waiting) return;
  it->second.waiting = false;
  --waiting_streams_;
  Continue(it->second);
}

// A stream that is neither ready nor parked: ready if it has both credit and bytes to
// send; parked if only the bytes are missing; else it waits for credit (the caller has
// set blocked_since when it ran out).
void SendScheduler::Continue(OutStream& s) {
  if (s.offset >= s.limit) return;
  if (s.body->available() <= s.offset) return Park(s);
  MarkReady(s);
}

// The body may wake us before NotifyAvailable returns; the wake is posted, so it finds
// the stream parked.
void SendScheduler::Park(OutStream& s) {
  s.waiting = true;
  ++waiting_streams_;
  if (wake_) s.body->NotifyAvailable(s.offset, wake_(s.id));
}

// A body that can go whole in its next chunk is "small": it jumps the round-robin.
void SendScheduler::MarkReady(OutStream& s) {
  s.ready = true;
  bool small = s.offset == 0 && s.size <= chunk_size_ && s.size <= s.limit && s.body->available() >= s.size;
  (small ? small_ : ready_).push_back(s.id);
}

std::optional<SendScheduler::Appended> SendScheduler::AppendNext(FrameBuffer* out,
                                                                 bool allow_streams, Clock::time_point now) {
  if (!control_.empty()) return AppendControl(out);
  if (!allow_streams) return std::nullopt;
  if (!small_.empty()) return AppendData(small_, out, now);
  if (!heads_.empty()) return AppendHead(out, now);
  if (!ready_.empty()) return AppendData(ready_, out, now);
  return std::nullopt;
}

SendScheduler::Appended SendScheduler::AppendControl(FrameBuffer* out) {
  Control c = std::move(control_.front());
  control_.pop_front();
  AppendFrame(out, c.type, 0, c.stream_id, c.payload);
  return Sent(c.type, c.stream_id);
}

SendScheduler::Appended SendScheduler::AppendHead(FrameBuffer* out, Clock::time_point now) {
  OutStream s = std::move(heads_.front());
  heads_.pop_front();
  head_bytes_ -= s.head.size();
  bool end = s.size == 0;
  AppendFrame(out, FrameType::kHead, end ? wire::kFlagEnd : 0, s.id, s.head);
  uint32_t id = s.id;
  if (end) return Finished(FrameType::kHead, id, std::move(s.done));
  s.head = std::string();
  s.limit = std::min(s.size, peer_window_);
  s.blocked_since = now;
  Continue(bodies_.emplace(id, std::move(s)).first->second);
  return Sent(FrameType::kHead, id);
}

SendScheduler::Appended SendScheduler::AppendData(std::deque<uint32_t>& from, FrameBuffer* out,
                                                   Clock::time_point now) {
  uint32_t id = from.front();
  from.pop_front();
  OutStream& s = bodies_.at(id);
  s.ready = false;
  // A ready stream has bytes available beyond its offset (available() only grows).
  uint64_t available = std::clamp(s.body->available(), s.offset, s.limit);
  size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size_, available - s.offset));
  size_t at = out->size();
  out->resize(at + kFrameHeaderSize + n);
  Result<size_t> got = s.body->ReadAt(s.offset, std::span<uint8_t>(out->data() + at + kFrameHeaderSize, n));
  if (!got.ok() || *got != n) {
    out->resize(at);
    return AbortUnreadable(out, s, got.ok() ? Status::DataLoss(fmt::format("body ended at {} of {} bytes",
                                                                          s.offset + *got, s.size))
                                            : got.status());
  }
  s.offset += n;
  bool end = s.offset == s.size;
  wire::EncodeFrameHeader({.type = FrameType::kData, .flags = static_cast<uint16_t>(end ? wire::kFlagEnd : 0),
                           .stream_id = id, .length = static_cast<uint32_t>(n)},
                          std::span<uint8_t>(out->data() + at, kFrameHeaderSize));
  if (end) {
    Done done = std::move(s.done);
    bodies_.erase(id);
    return Finished(FrameType::kData, id, std::move(done));
  }
  if (s.offset < s.limit) Continue(s);
  else s.blocked_since = now;
  return Sent(FrameType::kData, id);
}

SendScheduler::Appended SendScheduler::AbortUnreadable(FrameBuffer* out, OutStream& s, Status why) {
  uint32_t id = s.id;
  why = why.WithContext(fmt::format("reading the body of stream {}", id));
  AppendFrame(out, FrameType::kAbort, 0, id, wire::EncodeAbort({.code = "internal", .message = why.message()}));
  Done done = std::move(s.done);
  bodies_.erase(id);
  return Finished(FrameType::kAbort, id, std::move(done), std::move(why));
}

std::vector<SendScheduler::Stalled> SendScheduler::TakeStalled(Clock::time_point now, Clock::duration timeout) {
  std::vector<Stalled> stalled;
  for (auto it = bodies_.begin(); it != bodies_.end();) {
    OutStream& s = it->second;
    if (s.ready || s.waiting || now - s.blocked_since < timeout) {
      ++it;
      continue;
    }
    stalled.push_back({s.id, s.offset, s.size, now - s.blocked_since, std::move(s.done)});
    it = bodies_.erase(it);
  }
  return stalled;
}

size_t SendScheduler::Clear(std::vector<Done>* dropped) {
  size_t count = queued_messages();
  if (dropped != nullptr) {
    for (OutStream& s : heads_) dropped->push_back(std::move(s.done));
    for (auto& [id, s] : bodies_) dropped->push_back(std::move(s.done));
  }
  head_bytes_ = 0;
  waiting_streams_ = 0;
  control_.clear();
  heads_.clear();
  bodies_.clear();
  small_.clear();
  ready_.clear();
  return count;
}

}  // namespace ember::net
