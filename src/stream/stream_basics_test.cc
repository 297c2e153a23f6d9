// The stream layer's building blocks: retry backoff, progress, the timer queue, refs,
// body slices.
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <vector>

#include "stream/body_views.h"
#include "stream/download.h"
#include "stream/push_stream.h"
#include "stream/object_ref.h"
#include "stream/progress.h"
#include "stream/retry_policy.h"
#include "stream/stream_test_util.h"
#include "stream/timer_queue.h"

namespace ember::stream {
namespace {

using namespace std::chrono_literals;
using testing::TrackedBody;

TEST(RetryPolicy, DefaultBackoffIsOneTwoFourSecondsCappedAtSixty) {
  RetryPolicy p;
  EXPECT_EQ(p.max_retries, 3);
  EXPECT_EQ(p.Backoff(1), 1s);
  EXPECT_EQ(p.Backoff(2), 2s);
  EXPECT_EQ(p.Backoff(3), 4s);
  EXPECT_EQ(p.Backoff(6), 32s);
  EXPECT_EQ(p.Backoff(7), 60s);
  EXPECT_EQ(p.Backoff(1000), 60s);  // no overflow
}

TEST(RetryPolicy, BaseAndCapAreConfigurable) {
  RetryPolicy p{.base_backoff = 10ms, .max_backoff = 50ms};
  EXPECT_EQ(p.Backoff(1), 10ms);
  EXPECT_EQ(p.Backoff(3), 40ms);
  EXPECT_EQ(p.Backoff(4), 50ms);
}

TEST(RetryPolicy, ComesFromTheDownloadConfigKeys) {
  base::Config c;
  ASSERT_TRUE(c.Set("download_max_retries", "5", "test").ok());
  ASSERT_TRUE(c.Set("download_retry_backoff", "200ms", "test").ok());
  ASSERT_TRUE(c.Set("download_retry_max_backoff", "1", "test").ok());
  RetryPolicy p = RetryPolicy::FromConfig(c);
  EXPECT_EQ(p.max_retries, 5);
  EXPECT_EQ(p.Backoff(1), 200ms);
  EXPECT_EQ(p.Backoff(4), 1s);
}

TEST(StreamOptions, TimeoutsComeFromTheConfig) {
  base::Config c;
  ASSERT_TRUE(c.Set("streaming_per_request_timeout", "7", "test").ok());
  ASSERT_TRUE(c.Set("download_max_retries", "0", "test").ok());
  ASSERT_TRUE(c.Set("streaming_push_timeout", "90", "test").ok());
  DownloadOptions d;
  EXPECT_EQ(d.request_timeout, 60s);  // registry default
  ApplyConfig(c, &d);
  EXPECT_EQ(d.request_timeout, 7s);
  EXPECT_EQ(d.retry.max_retries, 0);
  PushOptions push;
  EXPECT_EQ(push.timeout, 600s);
  ApplyConfig(c, &push);
  EXPECT_EQ(push.timeout, 90s);
}

TEST(ProgressMeter, ReportsRateAndEta) {
  auto t0 = ProgressMeter::Clock::now();
  std::vector<TransferProgress> seen;
  ProgressMeter m("test", 100'000'000, [&](const TransferProgress& p) { seen.push_back(p); }, 0ms, 1h, t0);
  m.Update(25'000'000, t0 + 1s);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].bytes_done, 25'000'000u);
  EXPECT_EQ(seen[0].bytes_total, 100'000'000u);
  EXPECT_DOUBLE_EQ(seen[0].mb_per_s, 25.0);
  ASSERT_TRUE(seen[0].eta.has_value());
  EXPECT_EQ(*seen[0].eta, 3s);
  EXPECT_DOUBLE_EQ(seen[0].fraction(), 0.25);
  EXPECT_FALSE(seen[0].done);
  EXPECT_EQ(FormatProgress(seen[0]), "25.0/100.0 MB (25%), 25.0 MB/s, ETA 3.0 s");
}

TEST(ProgressMeter, ThrottlesCallbacksAndFinishesOnce) {
  auto t0 = ProgressMeter::Clock::now();
  int calls = 0;
  TransferProgress last;
  ProgressMeter m("test", 1000, [&](const TransferProgress& p) { ++calls, last = p; }, 1s, 1h, t0);
  m.Update(100, t0 + 100ms);  // too soon
  m.Update(200, t0 + 1s);
  m.Update(300, t0 + 1500ms);  // too soon
  m.Update(250, t0 + 2s);      // going back is ignored
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(last.bytes_done, 300u);
  m.Finish(Status::Ok(), t0 + 3s);
  m.Finish(Status::Ok(), t0 + 4s);
  m.Update(999, t0 + 5s);
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(last.done);
  EXPECT_EQ(last.elapsed, 3s);
}

TEST(TimerQueue, RunsTasksInDeadlineOrder) {
  TimerQueue q;
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> all;
  auto add = [&](int v) {
    std::lock_guard lock(mu);
    order.push_back(v);
    if (order.size() == 3) all.set_value();
  };
  q.After(60ms, [&] { add(3); });
  q.After(0ms, [&] { add(1); });
  q.After(30ms, [&] { add(2); });
  ASSERT_EQ(all.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(TimerQueue, CancelledTaskNeverRunsAndIsReleased) {
  TimerQueue q;
  auto captured = std::make_shared<int>(7);
  std::atomic<bool> ran{false};
  TimerQueue::TaskId id = q.After(50ms, [captured, &ran] { ran = true; });
  EXPECT_TRUE(q.Cancel(id));
  EXPECT_FALSE(q.Cancel(id));
  EXPECT_EQ(captured.use_count(), 1);  // the task and its captures are gone
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(ran);
  EXPECT_EQ(q.pending(), 0u);
}

TEST(TimerQueue, CancellingTheTaskItWaitsForIsSafe) {
  TimerQueue q;
  TimerQueue::TaskId first = q.After(200ms, [] {});
  std::this_thread::sleep_for(20ms);  // the queue's thread now waits for `first`
  ASSERT_TRUE(q.Cancel(first));
  std::promise<void> ran;
  q.After(10ms, [&] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(5s), std::future_status::ready);
}

TEST(ObjectRef, RoundTripsThroughJson) {
  ObjectRef r{.owner = "server", .ref_id = NewRefId(), .size = 123};
  Result<ObjectRef> back = ObjectRef::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->owner, "server");
  EXPECT_EQ(back->ref_id, r.ref_id);
  EXPECT_EQ(back->size, 123u);
  EXPECT_EQ(r.ref_id.size(), 33u);
  EXPECT_NE(NewRefId(), NewRefId());
}

TEST(ObjectRef, RejectsMalformedJson) {
  EXPECT_EQ(ObjectRef::FromJson(cell::Json::array()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ObjectRef::FromJson({{"owner", "s"}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ObjectRef::FromJson({{"owner", "s"}, {"ref", "R1"}, {"size", -1}}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(SliceOf, SharesContiguousObjectsAndCopiesOthers) {
  auto freed = std::make_shared<std::atomic<bool>>(false);
  for (bool contiguous : {true, false}) {
    std::shared_ptr<const cell::BodySource> object = std::make_shared<TrackedBody>("0123456789", freed, contiguous);
    Result<std::shared_ptr<cell::BodySource>> s = SliceOf(object, 3, 4);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_NE((*s)->contiguous(), nullptr);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>((*s)->contiguous()), (*s)->size()), "3456");
    EXPECT_EQ(object.use_count(), contiguous ? 2 : 1);  // a zero-copy slice keeps the object alive
  }
}

TEST(MeteredBody, CountsTheFurthestByteRead) {
  MeteredBody m(cell::BytesBody("abcdefgh"));
  std::array<uint8_t, 3> buf;
  ASSERT_TRUE(m.ReadAt(0, buf).ok());
  ASSERT_TRUE(m.ReadAt(6, buf).ok());
  EXPECT_EQ(m.bytes_read(), 8u);
  ASSERT_TRUE(m.ReadAt(2, buf).ok());
  EXPECT_EQ(m.bytes_read(), 8u);
}

}  // namespace
}  // namespace ember::stream
