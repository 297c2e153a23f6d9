#include "net/send_scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "wire/frame_decoder.h"

namespace ember::net {
namespace {

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

std::vector<Frame> Decode(const std::vector<uint8_t>& bytes) {
  wire::FrameDecoder d;
  std::vector<Frame> frames;
  EXPECT_TRUE(d.Feed(bytes, &frames).ok());
  EXPECT_TRUE(d.Finish().ok());
  return frames;
}

// Drains the scheduler one frame at a time.
std::vector<Frame> DrainAll(SendScheduler& s) {
  std::vector<uint8_t> buf;
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
  std::vector<uint8_t> buf;
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
  std::vector<uint8_t> buf;
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
  std::vector<uint8_t> buf;
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
  std::vector<uint8_t> buf;
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
  std::vector<uint8_t> buf;
  EXPECT_FALSE(s.AppendNext(&buf, true).has_value());
}

}  // namespace
}  // namespace ember::net
