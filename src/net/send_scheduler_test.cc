#include "net/send_scheduler.h"
#include "net/test_support.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <utility>
#include <string>
#include <vector>

#include "wire/frame_decoder.h"

namespace ember::net {
namespace {

using testing::Trace;

using wire::Frame;
using wire::FrameType;

// Records how it is read, to prove bodies are read lazily and in chunks.
class CountingBody final : public wire::BodySource {
 public:
  explicit CountingBody(uint64_t size, bool fail = false) : size_(size), fail_(fail) {}
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    ++reads;
    largest_read = std::max<size_t>(largest_read, out.size());
    if (fail_) return Status::DataLoss("disk on fire");
    size_t n = std::min<uint64_t>(out.size(), size_ - offset);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((offset + i) % 251);
    return n;
  }
  mutable std::atomic<int> reads{0};
  mutable std::atomic<size_t> largest_read{0};

 private:
  uint64_t size_;
  bool fail_;
};

std::vector<Frame> Decode(const FrameBuffer& bytes) {
  wire::FrameDecoder d;
  std::vector<Frame> frames;
  EXPECT_TRUE(d.Feed(bytes, &frames).ok());
  EXPECT_TRUE(d.Finish().ok());
  return frames;
}

// Drains the scheduler one frame at a time.
std::vector<Frame> DrainAll(SendScheduler& s) {
  FrameBuffer buf;
  while (s.AppendNext(&buf, true)) {
  }
  return Decode(buf);
}

TEST(SendScheduler, SendsAMessageWithoutBodyAsOneHeadWithEnd) {
  SendScheduler s(4);
  s.AddMessage(R"({"kind":"fire"})", nullptr);
  auto frames = DrainAll(s);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].header.type, FrameType::kHead);
  EXPECT_TRUE(frames[0].header.end());
  EXPECT_EQ(s.queued_messages(), 0u);
}

TEST(SendScheduler, SplitsABodyIntoChunksWithEndOnTheLast) {
  SendScheduler s(4);
  s.AddMessage("{}", wire::BytesBody("abcdefghij"));
  auto frames = DrainAll(s);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_FALSE(frames[0].header.end());
  EXPECT_EQ(frames[1].payload, "abcd");
  EXPECT_EQ(frames[2].payload, "efgh");
  EXPECT_EQ(frames[3].payload, "ij");
  EXPECT_TRUE(frames[3].header.end());
  EXPECT_FALSE(frames[2].header.end());
}

TEST(SendScheduler, SendsControlFramesFirstAndHoldsStreamsUntilAllowed) {
  SendScheduler s(4);
  s.AddMessage("{}", nullptr);
  s.AddControl(FrameType::kPing, "");
  FrameBuffer buf;
  auto a = s.AppendNext(&buf, false);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->type, FrameType::kPing);
  EXPECT_FALSE(s.AppendNext(&buf, false).has_value());
  a = s.AppendNext(&buf, true);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->type, FrameType::kHead);
  EXPECT_TRUE(a->message_done);
}

TEST(SendScheduler, LetsANewMessageOvertakeALargeBodyInProgress) {
  SendScheduler s(1000);
  uint32_t big = s.AddMessage("{}", std::make_shared<CountingBody>(100000));
  FrameBuffer buf;
  s.AppendNext(&buf, true);  // big HEAD
  s.AppendNext(&buf, true);  // big DATA 1
  uint32_t small = s.AddMessage("{}", wire::BytesBody("hi"));
  auto head = s.AppendNext(&buf, true);
  auto data = s.AppendNext(&buf, true);
  auto next_big = s.AppendNext(&buf, true);
  EXPECT_EQ(head->stream_id, small);
  EXPECT_EQ(head->type, FrameType::kHead);
  EXPECT_EQ(data->stream_id, small);
  EXPECT_TRUE(data->message_done);
  EXPECT_EQ(next_big->stream_id, big);
}

TEST(SendScheduler, InterleavesBodiesRoundRobin) {
  SendScheduler s(10);
  uint32_t a = s.AddMessage("{}", std::make_shared<CountingBody>(30));
  uint32_t b = s.AddMessage("{}", std::make_shared<CountingBody>(30));
  std::vector<uint32_t> data_order;
  for (const Frame& f : DrainAll(s)) {
    if (f.header.type == FrameType::kData) data_order.push_back(f.header.stream_id);
  }
  EXPECT_EQ(data_order, (std::vector<uint32_t>{a, b, a, b, a, b}));
}

TEST(SendScheduler, ReadsTheBodyLazilyOneChunkAtATime) {
  SendScheduler s(1 << 10);
  auto body = std::make_shared<CountingBody>(1 << 20);
  s.AddMessage("{}", body);
  FrameBuffer buf;
  s.AppendNext(&buf, true);
  EXPECT_EQ(body->reads.load(), 0);
  s.AppendNext(&buf, true);
  EXPECT_EQ(body->reads.load(), 1);
  EXPECT_EQ(body->largest_read.load(), 1u << 10);
  EXPECT_LT(buf.size(), 2u << 10);
}

TEST(SendScheduler, AbortsOnlyTheStreamWhoseBodyCannotBeRead) {
  SendScheduler s(10);
  uint32_t bad = s.AddMessage("{}", std::make_shared<CountingBody>(30, /*fail=*/true));
  uint32_t good = s.AddMessage("{}", wire::BytesBody("ok"));
  FrameBuffer buf;
  std::vector<SendScheduler::Appended> out;
  while (auto a = s.AppendNext(&buf, true)) out.push_back(*a);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[2].stream_id, good);  // fits in one chunk, so it goes first
  EXPECT_TRUE(out[2].message_done);
  EXPECT_EQ(out[3].type, FrameType::kAbort);
  EXPECT_EQ(out[3].stream_id, bad);
  EXPECT_TRUE(out[3].message_done);
  EXPECT_EQ(out[3].error.code(), StatusCode::kDataLoss);
}

TEST(SendScheduler, ClearCountsTheDroppedMessages) {
  SendScheduler s(10);
  s.AddMessage("{}", nullptr);
  s.AddMessage("{}", wire::BytesBody("x"));
  EXPECT_EQ(s.Clear(), 2u);
  FrameBuffer buf;
  EXPECT_FALSE(s.AppendNext(&buf, true).has_value());
}


// ---- live bodies (a relay forwarding a stream as it arrives) ---------------------------

// A body whose bytes "arrive" when the test calls Arrive (byte i = i % 251); Fail makes
// every read an error, as a relay's body does when its incoming stream breaks.
class LiveBody final : public wire::BodySource {
 public:
  explicit LiveBody(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  uint64_t available() const override { return failed_ ? size_ : arrived_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (failed_) return Status::Aborted("the incoming stream broke");
    size_t n = std::min<uint64_t>(out.size(), arrived_ - offset);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((offset + i) % 251);
    return n;
  }
  void NotifyAvailable(uint64_t offset, std::function<void()> wake) const override {
    ++notify_calls;
    if (available() > offset) return wake();
    wake_ = std::move(wake);
  }
  void Arrive(uint64_t n) {
    arrived_ += n;
    if (wake_) std::exchange(wake_, nullptr)();
  }
  void Fail() {
    failed_ = true;
    if (wake_) std::exchange(wake_, nullptr)();
  }
  mutable int notify_calls = 0;

 private:
  uint64_t size_;
  uint64_t arrived_ = 0;
  bool failed_ = false;
  mutable std::function<void()> wake_;
};


// A scheduler whose wake callbacks record the stream they wake (the connection would
// post them to its io thread and call OnBodyAvailable there).
struct WokenStreams {
  std::vector<uint32_t> ids;
  SendScheduler::WakeFactory Factory() {
    return [this](uint32_t id) { return [this, id] { ids.push_back(id); }; };
  }
  void Deliver(SendScheduler& s) {
    for (uint32_t id : std::exchange(ids, {})) s.OnBodyAvailable(id);
  }
};

TEST(SendSchedulerLiveBody, ParksAStreamWithNothingAvailableAndResumesItWhenBytesArrive) {
  WokenStreams woken;
  SendScheduler s(4, woken.Factory());
  auto body = std::make_shared<LiveBody>(10);
  s.AddMessage("{}", body);
  EXPECT_EQ(Trace(DrainAll(s)), "H1");
  EXPECT_EQ(s.waiting_streams(), 1u);
  EXPECT_EQ(s.blocked_streams(), 0u);
  EXPECT_TRUE(woken.ids.empty());
  body->Arrive(3);
  EXPECT_EQ(woken.ids, std::vector<uint32_t>{1});
  woken.Deliver(s);
  EXPECT_EQ(s.waiting_streams(), 0u);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:3");  // a partial chunk: only 3 bytes were there
  EXPECT_EQ(s.waiting_streams(), 1u);
  body->Arrive(6);
  woken.Deliver(s);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:4 D1:2");
  body->Arrive(1);
  woken.Deliver(s);
  auto frames = DrainAll(s);
  EXPECT_EQ(Trace(frames), "D1:1");
  EXPECT_TRUE(frames[0].header.end());
  EXPECT_EQ(frames[0].payload, std::string(1, static_cast<char>(9)));
  EXPECT_EQ(s.queued_messages(), 0u);
}

TEST(SendSchedulerLiveBody, AStreamWaitingForDataIsNotStarvedOfCredit) {
  WokenStreams woken;
  SendScheduler s(4, woken.Factory());
  s.SetPeerWindow(4);
  auto t0 = SendScheduler::Clock::now();
  auto body = std::make_shared<LiveBody>(12);
  s.AddMessage("{}", body);
  FrameBuffer buf;
  while (s.AppendNext(&buf, true, t0)) {
  }
  EXPECT_TRUE(s.TakeStalled(t0 + std::chrono::hours(1), std::chrono::seconds(1)).empty());
  EXPECT_EQ(s.queued_messages(), 1u);
  // Out of credit with bytes waiting: that is a credit stall again.
  body->Arrive(6);
  woken.Deliver(s);
  while (s.AppendNext(&buf, true, t0)) {
  }
  EXPECT_EQ(s.blocked_streams(), 1u);
  EXPECT_EQ(s.waiting_streams(), 0u);
  auto stalled = s.TakeStalled(t0 + std::chrono::seconds(5), std::chrono::seconds(1));
  ASSERT_EQ(stalled.size(), 1u);
  EXPECT_EQ(stalled[0].offset, 4u);
}

TEST(SendSchedulerLiveBody, SizesDataByCreditAndAvailabilityWhicheverIsLess) {
  WokenStreams woken;
  SendScheduler s(8, woken.Factory());
  s.SetPeerWindow(5);
  auto body = std::make_shared<LiveBody>(20);
  body->Arrive(3);
  s.AddMessage("{}", body);
  EXPECT_EQ(Trace(DrainAll(s)), "H1 D1:3");  // available < credit < chunk
  body->Arrive(10);
  woken.Deliver(s);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:2");  // credit (5) < available (13)
  s.OnCredit(1, 100);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:8");  // chunk: 8 of the 8 left available
  EXPECT_EQ(s.waiting_streams(), 1u);     // credit but nothing more yet: parked
  body->Arrive(7);
  woken.Deliver(s);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:7");
  EXPECT_EQ(s.queued_messages(), 0u);
}

TEST(SendSchedulerLiveBody, AbortsAParkedStreamWhoseBodyFails) {
  WokenStreams woken;
  SendScheduler s(4, woken.Factory());
  auto body = std::make_shared<LiveBody>(10);
  Status result;
  s.AddMessage("{}", body, [&](const Status& st) { result = st; });
  s.AddMessage("{}", wire::BytesBody("ok"));
  body->Arrive(2);
  EXPECT_EQ(Trace(DrainAll(s)), "H1 H2 D2:2 D1:2");
  body->Fail();
  woken.Deliver(s);
  FrameBuffer buf;
  auto a = s.AppendNext(&buf, true);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->type, FrameType::kAbort);
  EXPECT_TRUE(a->message_done);
  EXPECT_EQ(a->error.code(), StatusCode::kAborted);
  ASSERT_TRUE(a->done);
  a->done(a->error);
  EXPECT_EQ(result.code(), StatusCode::kAborted);
  EXPECT_EQ(s.queued_messages(), 0u);
}

TEST(SendSchedulerLiveBody, IgnoresAWakeForAStreamThatIsNotParked) {
  WokenStreams woken;
  SendScheduler s(4, woken.Factory());
  auto body = std::make_shared<LiveBody>(8);
  body->Arrive(8);
  s.AddMessage("{}", body);
  FrameBuffer buf;
  s.AppendNext(&buf, true);  // HEAD: ready, never parked
  EXPECT_EQ(body->notify_calls, 0);
  s.OnBodyAvailable(1);
  s.OnBodyAvailable(99);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:4 D1:4");
  EXPECT_TRUE(woken.ids.empty());
}

TEST(SendSchedulerLiveBody, SendsASmallLiveBodyAsItsBytesArrive) {
  WokenStreams woken;
  SendScheduler s(4, woken.Factory());
  auto body = std::make_shared<LiveBody>(3);
  s.AddMessage("{}", body);
  EXPECT_EQ(Trace(DrainAll(s)), "H1");
  body->Arrive(1);
  woken.Deliver(s);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:1");
  body->Arrive(2);
  woken.Deliver(s);
  EXPECT_EQ(Trace(DrainAll(s)), "D1:2");
}

}  // namespace
}  // namespace ember::net
