// Credit flow control (docs/wire-format.md §8) in the two pure halves of a connection:
// the SendScheduler (never sends beyond credit, skips starved streams) and the
// StreamAssembler (grants as its sink consumes, refuses DATA beyond credit); and the
// mapping of docs/config.md keys onto ConnectionOptions.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "net/connection.h"
#include "net/send_scheduler.h"
#include "net/test_support.h"
#include "net/stream_assembler.h"
#include "wire/frame_decoder.h"

namespace ember::net {
namespace {

using testing::Trace;

using namespace std::chrono_literals;
using wire::Frame;
using wire::FrameType;

std::vector<Frame> Decode(const FrameBuffer& bytes) {
  wire::FrameDecoder d;
  std::vector<Frame> frames;
  EXPECT_TRUE(d.Feed(bytes, &frames).ok());
  return frames;
}

// Appends frames until the scheduler has nothing ready; returns them decoded.
std::vector<Frame> Drain(SendScheduler& s, SendScheduler::Clock::time_point now = SendScheduler::Clock::now()) {
  FrameBuffer buf;
  while (s.AppendNext(&buf, true, now)) {
  }
  return Decode(buf);
}


TEST(SendSchedulerCredit, NeverSendsBeyondThePeerWindow) {
  SendScheduler s(4);
  s.SetPeerWindow(6);
  s.AddMessage("{}", wire::BytesBody(std::string(20, 'x')));
  EXPECT_EQ(Trace(Drain(s)), "H1 D1:4 D1:2");
  EXPECT_EQ(s.blocked_streams(), 1u);
  s.OnCredit(1, 5);
  EXPECT_EQ(Trace(Drain(s)), "D1:4 D1:1");
  s.OnCredit(1, 100);  // more than the body needs: capped at its size
  EXPECT_EQ(Trace(Drain(s)), "D1:4 D1:4 D1:1");
  EXPECT_EQ(s.queued_messages(), 0u);
}

TEST(SendSchedulerCredit, SkipsAStarvedStreamAndServesTheOthers) {
  SendScheduler s(4);
  s.SetPeerWindow(4);
  s.AddMessage("{}", wire::BytesBody(std::string(12, 'a')));
  s.AddMessage("{}", wire::BytesBody(std::string(12, 'b')));
  EXPECT_EQ(Trace(Drain(s)), "H1 H2 D1:4 D2:4");
  s.OnCredit(2, 8);
  s.AddMessage("{}", wire::BytesBody("tiny"));  // arrives while 1 is starved; fits one chunk
  EXPECT_EQ(Trace(Drain(s)), "H3 D3:4 D2:4 D2:4");
  EXPECT_EQ(s.blocked_streams(), 1u);
  s.OnCredit(1, 8);
  EXPECT_EQ(Trace(Drain(s)), "D1:4 D1:4");
}

TEST(SendSchedulerCredit, CompletesSmallMessagesInTheOrderTheyWereQueued) {
  SendScheduler s(4);
  s.AddMessage("{}", wire::BytesBody(std::string(12, 'b')));
  for (int i = 0; i < 3; ++i) s.AddMessage("{}", wire::BytesBody("s"));
  EXPECT_EQ(Trace(Drain(s)), "H1 H2 D2:1 H3 D3:1 H4 D4:1 D1:4 D1:4 D1:4");
}

TEST(SendSchedulerCredit, SendsCreditAndAbortFramesBeforeAnyData) {
  SendScheduler s(4);
  s.AddMessage("{}", wire::BytesBody(std::string(8, 'a')));
  FrameBuffer buf;
  ASSERT_TRUE(s.AppendNext(&buf, true));  // HEAD 1
  s.AddCredit(9, 1234);
  s.AddAbort(5, R"({"code":"timeout","message":"m"})");
  auto frames = Drain(s);
  ASSERT_EQ(Trace(frames), "C9 A5 D1:4 D1:4");
  EXPECT_EQ(*wire::DecodeCredit(frames[0].payload), 1234u);
}

TEST(SendSchedulerCredit, IgnoresCreditForAStreamThatEnded) {
  SendScheduler s(4);
  s.AddMessage("{}", wire::BytesBody("ab"));
  EXPECT_EQ(Trace(Drain(s)), "H1 D1:2");
  s.OnCredit(1, 10);
  s.OnCredit(77, 10);
  EXPECT_TRUE(Drain(s).empty());
}

TEST(SendSchedulerCredit, TakesOnlyStreamsStarvedLongerThanTheTimeout) {
  SendScheduler s(4);
  s.SetPeerWindow(4);
  int done_calls = 0;
  auto t0 = SendScheduler::Clock::now();
  s.AddMessage("{}", wire::BytesBody(std::string(8, 'a')), [&](const Status&) { ++done_calls; });
  Drain(s, t0);  // stream 1 starved since t0
  s.AddMessage("{}", wire::BytesBody(std::string(8, 'b')));
  Drain(s, t0 + 5s);  // stream 2 starved since t0 + 5 s
  auto stalled = s.TakeStalled(t0 + 6s, 3s);
  ASSERT_EQ(stalled.size(), 1u);
  EXPECT_EQ(stalled[0].stream_id, 1u);
  EXPECT_EQ(stalled[0].offset, 4u);
  EXPECT_EQ(stalled[0].waited, 6s);
  stalled[0].done(Status::DeadlineExceeded("x"));
  EXPECT_EQ(done_calls, 1);
  EXPECT_EQ(s.queued_messages(), 1u);
  s.OnCredit(2, 4);
  EXPECT_TRUE(s.TakeStalled(t0 + 60s, 3s).empty());  // 2 has credit, so it is not starved
}

TEST(SendSchedulerCredit, HandsTheCallbackOverWithTheLastFrameOrOnClear) {
  SendScheduler s(4);
  std::vector<std::string> seen;
  s.AddMessage("{}", wire::BytesBody("abc"), [&](const Status& st) { seen.push_back("a:" + st.ToString()); });
  s.AddMessage("{}", nullptr, [&](const Status& st) { seen.push_back("b:" + st.ToString()); });
  FrameBuffer buf;
  std::vector<SendScheduler::Done> finished;
  while (auto a = s.AppendNext(&buf, true)) {
    if (a->message_done) finished.push_back(std::move(a->done));
  }
  ASSERT_EQ(finished.size(), 2u);
  for (auto& d : finished) d(Status::Ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a:OK", "b:OK"}));  // b has no body: done at its HEAD
  s.AddMessage("{}", wire::BytesBody("x"), [&](const Status& st) { seen.push_back("c:" + st.ToString()); });
  std::vector<SendScheduler::Done> dropped;
  EXPECT_EQ(s.Clear(&dropped), 1u);
  ASSERT_EQ(dropped.size(), 1u);
  dropped[0](Status::Unavailable("gone"));
  EXPECT_EQ(seen.back(), "c:Unavailable: gone");
}

// ---- receive side -------------------------------------------------------------------

Frame Head(uint32_t id, uint64_t body_size) {
  wire::Json h = {{"kind", "fire"}, {"topic", "t"}, {"body_size", body_size}};
  return {{FrameType::kHead, 0, id, 0}, h.dump()};
}

Frame Data(uint32_t id, size_t n, bool end = false) {
  return {{FrameType::kData, static_cast<uint16_t>(end ? wire::kFlagEnd : 0), id, static_cast<uint32_t>(n)},
          std::string(n, 'd')};
}

class CountingSink final : public StreamSink {
 public:
  explicit CountingSink(CreditPolicy policy, StreamCredit* bound = nullptr) : policy_(policy), bound_(bound) {}
  Status Write(std::span<const uint8_t> chunk) override { return Status::Ok(); }
  Result<std::shared_ptr<wire::BodySource>> Finish() override { return std::shared_ptr<wire::BodySource>(); }
  CreditPolicy credit_policy() const override { return policy_; }
  void BindCredit(StreamCredit credit) override {
    if (bound_) *bound_ = std::move(credit);
  }

 private:
  CreditPolicy policy_;
  StreamCredit* bound_;
};

struct Grants {
  std::vector<std::pair<uint32_t, uint64_t>> sent;
  StreamAssembler::CreditHooks Hooks() {
    return {.grant = [this](uint32_t id, uint64_t n) { sent.emplace_back(id, n); },
            .make_handle = nullptr};
  }
};

StreamSinkFactory SinkOf(CreditPolicy policy, StreamCredit* bound = nullptr) {
  return [policy, bound](const wire::Json&, uint64_t) -> Result<std::unique_ptr<StreamSink>> {
    return std::unique_ptr<StreamSink>(std::make_unique<CountingSink>(policy, bound));
  };
}

using GrantList = std::vector<std::pair<uint32_t, uint64_t>>;

TEST(StreamAssemblerCredit, GrantsAsAnOnWriteSinkConsumesInBatchesOfAQuarterWindow) {
  Grants g;
  StreamAssembler a({.max_body_size = 1 << 20, .max_open_streams = 8, .window = 8}, SinkOf(CreditPolicy::kOnWrite),
                    g.Hooks());
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 20), &out).ok());
  EXPECT_TRUE(g.sent.empty());
  ASSERT_TRUE(a.OnFrame(Data(1, 1), &out).ok());  // 1 consumed < threshold 2: no frame yet
  EXPECT_TRUE(g.sent.empty());
  ASSERT_TRUE(a.OnFrame(Data(1, 3), &out).ok());
  EXPECT_EQ(g.sent, (GrantList{{1, 4}}));
  ASSERT_TRUE(a.OnFrame(Data(1, 8), &out).ok());
  EXPECT_EQ(g.sent, (GrantList{{1, 4}, {1, 8}}));  // now 20 = the whole body granted
  ASSERT_TRUE(a.OnFrame(Data(1, 8, true), &out).ok());
  EXPECT_EQ(g.sent.size(), 2u);
  EXPECT_EQ(out.size(), 1u);
}

TEST(StreamAssemblerCredit, GrantsTheWholeBodyAtHeadForTheBufferingSink) {
  Grants g;
  StreamAssembler a({.max_body_size = 1 << 20, .max_open_streams = 8, .window = 8}, nullptr, g.Hooks());
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(3, 100), &out).ok());
  EXPECT_EQ(g.sent, (GrantList{{3, 92}}));
  ASSERT_TRUE(a.OnFrame(Data(3, 100, true), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body->size(), 100u);
}

TEST(StreamAssemblerCredit, RefusesDataBeyondTheGrantedCredit) {
  StreamAssembler a({.max_body_size = 1 << 20, .max_open_streams = 8, .window = 8}, SinkOf(CreditPolicy::kManual));
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 20), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, 8), &out).ok());
  Status s = a.OnFrame(Data(1, 1), &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("beyond its flow-control credit"), std::string::npos) << s.ToString();
}

TEST(StreamAssemblerCredit, LetsAManualSinkReturnCreditLater) {
  Grants g;
  StreamCredit bound;
  std::vector<std::pair<uint32_t, uint64_t>> handles;  // (stream, serial) the handles were made for
  StreamAssembler::CreditHooks hooks = g.Hooks();
  hooks.make_handle = [&handles](uint32_t id, uint64_t serial) {
    handles.emplace_back(id, serial);
    return StreamCredit([](uint64_t) {});
  };
  StreamAssembler a({.max_body_size = 1 << 20, .max_open_streams = 8, .window = 8},
                    SinkOf(CreditPolicy::kManual, &bound), hooks);
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 20), &out).ok());
  ASSERT_EQ(handles.size(), 1u);
  ASSERT_TRUE(a.OnFrame(Data(1, 8), &out).ok());
  EXPECT_TRUE(g.sent.empty());  // written, not consumed yet
  EXPECT_EQ(a.unconsumed_bytes(), 8u);
  a.OnConsumed(1, handles[0].second, 6);
  EXPECT_EQ(g.sent, (GrantList{{1, 6}}));
  a.OnConsumed(1, handles[0].second + 1, 2);  // another stream's serial: ignored
  a.OnConsumed(1, handles[0].second, 100);    // more than received: capped at 8
  EXPECT_EQ(g.sent, (GrantList{{1, 6}, {1, 2}}));
  EXPECT_EQ(a.unconsumed_bytes(), 0u);
}

TEST(StreamAssemblerCredit, CountsARejectedStreamsDiscardedBytesAsConsumed) {
  Grants g;
  StreamAssembler a({.max_body_size = 10, .max_open_streams = 8, .window = 8}, SinkOf(CreditPolicy::kManual),
                    g.Hooks());
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 20), &out).ok());  // over max_body_size: drained
  ASSERT_TRUE(a.OnFrame(Data(1, 8), &out).ok());
  EXPECT_EQ(g.sent, (GrantList{{1, 8}}));
  ASSERT_TRUE(a.OnFrame(Data(1, 8), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, 4, true), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status.code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace ember::net

namespace ember::net {
namespace {

TEST(ApplyConfig, SetsTheConnectionFromEveryTransportKey) {
  base::Config c;
  ASSERT_TRUE(c.Set("streaming_chunk_size", "256KiB", "t").ok());
  ASSERT_TRUE(c.Set("streaming_window_size", "4MiB", "t").ok());
  ASSERT_TRUE(c.Set("streaming_send_timeout", "7", "t").ok());
  ASSERT_TRUE(c.Set("streaming_ack_progress_timeout", "8", "t").ok());
  ASSERT_TRUE(c.Set("streaming_ack_progress_check_interval", "0.5", "t").ok());
  ASSERT_TRUE(c.Set("sfm_send_stall_timeout", "9", "t").ok());
  ASSERT_TRUE(c.Set("sfm_send_stall_consecutive_checks", "4", "t").ok());
  ASSERT_TRUE(c.Set("sfm_close_stalled_connection", "true", "t").ok());
  ASSERT_TRUE(c.Set("connection_check_interval", "2", "t").ok());
  ASSERT_TRUE(c.Set("heartbeat_interval", "11", "t").ok());
  ASSERT_TRUE(c.Set("heartbeat_misses", "5", "t").ok());
  ASSERT_TRUE(c.Set("max_body_size", "1GiB", "t").ok());
  ASSERT_TRUE(c.Set("connect_timeout", "3", "t").ok());
  ASSERT_TRUE(c.Set("goaway_linger", "250ms", "t").ok());
  ConnectionOptions o;
  ApplyConfig(c, &o);
  EXPECT_EQ(o.chunk_size, 256u << 10);
  EXPECT_EQ(o.window_size, 4u << 20);
  EXPECT_EQ(o.send_timeout, 7s);
  EXPECT_EQ(o.ack_progress_timeout, 8s);
  EXPECT_EQ(o.ack_progress_check_interval, 500ms);
  EXPECT_EQ(o.stall_timeout, 9s);
  EXPECT_EQ(o.stall_consecutive_checks, 4);
  EXPECT_TRUE(o.close_stalled);
  EXPECT_EQ(o.check_interval, 2s);
  EXPECT_EQ(o.heartbeat_interval, 11s);
  EXPECT_EQ(o.heartbeat_misses, 5);
  EXPECT_EQ(o.max_body_size, 1ull << 30);
  EXPECT_EQ(o.handshake_timeout, 3s);
  EXPECT_EQ(o.goaway_linger, 250ms);
}

TEST(ConnectionOptions, DefaultsAreTheConfigRegistryDefaults) {
  const base::Config defaults;  // every key at its registered default
  ConnectionOptions from_registry;
  ApplyConfig(defaults, &from_registry);
  ConnectionOptions o;
  EXPECT_EQ(o.window_size, 32u << 20);  // docs/config.md; not the wire's 16 MiB fallback
  EXPECT_EQ(o.window_size, from_registry.window_size);
  EXPECT_EQ(o.chunk_size, from_registry.chunk_size);
  EXPECT_EQ(o.max_body_size, from_registry.max_body_size);
  EXPECT_EQ(o.handshake_timeout, from_registry.handshake_timeout);
  EXPECT_EQ(o.goaway_linger, from_registry.goaway_linger);
  EXPECT_EQ(o.send_timeout, from_registry.send_timeout);
  EXPECT_EQ(o.ack_progress_timeout, from_registry.ack_progress_timeout);
  EXPECT_EQ(o.ack_progress_check_interval, from_registry.ack_progress_check_interval);
  EXPECT_EQ(o.stall_timeout, from_registry.stall_timeout);
  EXPECT_EQ(o.stall_consecutive_checks, from_registry.stall_consecutive_checks);
  EXPECT_EQ(o.close_stalled, from_registry.close_stalled);
  EXPECT_EQ(o.check_interval, from_registry.check_interval);
  EXPECT_EQ(o.heartbeat_interval, from_registry.heartbeat_interval);
  EXPECT_EQ(o.heartbeat_misses, from_registry.heartbeat_misses);
}

}  // namespace
}  // namespace ember::net
