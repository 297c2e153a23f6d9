// The owner side on its own: raw chunk requests from a child cell, transaction endings,
// memory release, and concurrent chunk production.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include "stream/download_service.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "stream/protocol.h"
#include "stream/stream_test_util.h"

namespace ember::stream {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::StartOwner;
using testing::StartReceiver;
using testing::TrackedBody;

struct Fixture {
  std::shared_ptr<cell::Cell> owner = StartOwner();
  std::shared_ptr<DownloadService> service =
      DownloadService::Install(owner, {.monitor_interval = std::chrono::milliseconds(20)});
  std::shared_ptr<cell::Cell> site = StartReceiver("site-1", owner);

  Result<cell::Message> Chunk(const cell::Json& h) {
    return site->Request("server", cell::Message::Make("dl.chunk", h), 5s);
  }
  Result<cell::Message> Chunk(const RefId& ref, uint64_t offset, uint64_t max_len) {
    return Chunk({{"ref", ref}, {"offset", offset}, {"max_len", max_len}});
  }
  // The done report site-1 sends when it has every byte (ok) or gave up.
  void Done(const RefId& ref, bool ok) {
    ASSERT_TRUE(site->Fire("server", cell::Message::Make("dl.done", {{"ref", ref}, {"ok", ok}})).ok());
  }
};

std::string Bytes(const cell::Message& m) {
  return m.body ? std::string(reinterpret_cast<const char*>(m.body->contiguous()), m.body->size()) : "";
}

TEST(DownloadService, ServesAChunkAsTheReplyBody) {
  Fixture f;
  RefId ref = f.service->Register(cell::BytesBody("hello, world")).value();
  Result<cell::Message> r = f.Chunk(ref, 7, 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Bytes(*r), "wor");
  EXPECT_EQ(r->h()["size"], 12);
  EXPECT_EQ(r->h()["offset"], 7);
  Result<cell::Message> tail = f.Chunk(ref, 10, 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(Bytes(*tail), "ld");
}

TEST(DownloadService, ClampsChunksToMaxChunkSize) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner, {.max_chunk_size = 4});
  auto site = StartReceiver("site-1", owner);
  RefId ref = service->Register(cell::BytesBody("0123456789")).value();
  auto r = site->Request("server", cell::Message::Make("dl.chunk", {{"ref", ref}, {"offset", 2}, {"max_len", 100}}), 5s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Bytes(*r), "2345");
}

TEST(DownloadService, RejectsBadRequestsWithClearCodes) {
  Fixture f;
  RefId ref = f.service->Register(cell::BytesBody("abc")).value();
  EXPECT_EQ(f.Chunk(ref, 4, 1).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(f.Chunk("R-unknown", 0, 1).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(f.Chunk({{"ref", ref}, {"offset", -1}, {"max_len", 1}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.Chunk({{"ref", ref}, {"offset", 0}, {"max_len", 0}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.Chunk({{"offset", 0}, {"max_len", 1}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.service->Register(nullptr).status().code(), StatusCode::kInvalidArgument);
}

TEST(DownloadService, RegisteringAnActiveRefAgainFails) {
  Fixture f;
  RefId ref = f.service->Register(cell::BytesBody("a")).value();
  EXPECT_EQ(f.service->Register(cell::BytesBody("b"), {.ref_id = ref}).status().code(), StatusCode::kAlreadyExists);
  RefId chosen = f.service->Register(cell::BytesBody("c"), {.ref_id = "R-chosen"}).value();
  EXPECT_EQ(chosen, "R-chosen");
}

TEST(DownloadService, CancelledRefAnswersAborted) {
  Fixture f;
  RefId ref = f.service->Register(cell::BytesBody("abc")).value();
  ASSERT_TRUE(f.service->Cancel(ref, "job stopped").ok());
  Status s = f.Chunk(ref, 0, 1).status();
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_NE(s.message().find("job stopped"), std::string::npos) << s.message();
  auto result = f.service->WaitDone(ref, 1s);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status, TransactionStatus::kCancelled);
}

TEST(DownloadService, EndsWhenAllReceiversReportDoneAndFreesTheObject) {
  Fixture f;
  auto freed = std::make_shared<std::atomic<bool>>(false);
  auto done = std::make_shared<std::promise<TransactionResult>>();
  RefId ref = f.service
                  ->Register(std::make_shared<TrackedBody>("payload", freed),
                             {.num_receivers = 1, .on_done = [done](const TransactionResult& r) { done->set_value(r); }})
                  .value();
  ASSERT_TRUE(f.Chunk(ref, 0, 100).ok());
  EXPECT_FALSE(freed->load());
  f.Done(ref, true);
  auto fut = done->get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  TransactionResult r = fut.get();
  EXPECT_EQ(r.status, TransactionStatus::kFinished);
  EXPECT_EQ(r.receivers_ok, std::vector<std::string>{"site-1"});
  EXPECT_EQ(r.bytes_served, 7u);
  EXPECT_EQ(r.chunks_served, 1u);
  EXPECT_TRUE(Eventually([&] { return freed->load(); }));
  EXPECT_EQ(f.service->active_transactions(), 0u);
  EXPECT_EQ(f.Chunk(ref, 0, 1).status().code(), StatusCode::kNotFound);
}

TEST(DownloadService, InactivityTimeoutEndsTheTransactionAndFreesTheObject) {
  Fixture f;
  auto freed = std::make_shared<std::atomic<bool>>(false);
  RefId ref = f.service
                  ->Register(std::make_shared<TrackedBody>("payload", freed),
                             {.num_receivers = 2, .inactivity_timeout = 200ms})
                  .value();
  ASSERT_TRUE(f.Chunk(ref, 0, 100).ok());
  f.Done(ref, true);  // one of two: not finished
  auto r = f.service->WaitDone(ref, 5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, TransactionStatus::kTimedOut);
  EXPECT_EQ(r->receivers_ok, std::vector<std::string>{"site-1"});
  EXPECT_TRUE(Eventually([&] { return freed->load(); }));
}

TEST(DownloadService, ShutdownCancelsEverything) {
  Fixture f;
  auto freed = std::make_shared<std::atomic<bool>>(false);
  RefId ref = f.service->Register(std::make_shared<TrackedBody>("x", freed)).value();
  f.service->Shutdown();
  EXPECT_TRUE(freed->load());
  EXPECT_EQ(f.Chunk(ref, 0, 1).status().code(), StatusCode::kAborted);
  EXPECT_EQ(f.service->Register(cell::BytesBody("y")).status().code(), StatusCode::kFailedPrecondition);
}

// A body whose ReadAt waits until `want` readers are inside at once (or 3 s pass): if the
// service read chunks under a lock, readers would never overlap.
class RendezvousBody final : public cell::BodySource {
 public:
  RendezvousBody(std::string bytes, int want) : bytes_(std::move(bytes)), want_(want) {}
  uint64_t size() const override { return bytes_.size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    {
      std::unique_lock lock(mu_);
      max_inside_ = std::max(max_inside_, ++inside_);
      cv_.notify_all();
      cv_.wait_for(lock, 3s, [&] { return max_inside_ >= want_; });
      --inside_;
    }
    size_t n = std::min<size_t>(out.size(), bytes_.size() - offset);
    std::memcpy(out.data(), bytes_.data() + offset, n);
    return n;
  }
  int max_inside() const {
    std::lock_guard lock(mu_);
    return max_inside_;
  }

 private:
  const std::string bytes_;
  const int want_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable int inside_ = 0, max_inside_ = 0;
};

TEST(DownloadService, ProducesChunksForManyReceiversConcurrently) {
  constexpr int kReceivers = 4;
  auto owner = StartOwner("127.0.0.1:0", /*workers=*/kReceivers);
  auto service = DownloadService::Install(owner);
  auto body = std::make_shared<RendezvousBody>(std::string(1000, 'x'), kReceivers);
  RefId ref = service->Register(body, {.num_receivers = kReceivers}).value();
  std::vector<std::shared_ptr<cell::Cell>> sites;
  std::vector<std::future<Result<cell::Message>>> replies;
  for (int i = 0; i < kReceivers; ++i) {
    sites.push_back(StartReceiver("site-" + std::to_string(i + 1), owner));
    replies.push_back(std::async(std::launch::async, [site = sites.back(), ref] {
      return site->Request("server", cell::Message::Make("dl.chunk", {{"ref", ref}, {"offset", 0}, {"max_len", 100}}),
                           10s);
    }));
  }
  for (auto& r : replies) {
    Result<cell::Message> m = r.get();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->body_size(), 100u);
  }
  EXPECT_EQ(body->max_inside(), kReceivers);
}

}  // namespace
}  // namespace ember::stream
