// Pull downloads end to end: real cells on loopback, the owner's DownloadService, and
// receivers pulling with Download(). Every wait has a deadline.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include "stream/download.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "stream/download_service.h"
#include "stream/stream_test_util.h"

namespace ember::stream {
namespace {

using namespace std::chrono_literals;
using testing::Clock;
using testing::Eventually;
using testing::RandomBytes;
using testing::Sha256;
using testing::StartOwner;
using testing::StartReceiver;
using testing::TrackedBody;

// The chunk requests an owner saw.
class RequestLog {
 public:
  void Add(const ChunkRequestInfo& info) {
    std::lock_guard lock(mu_);
    seen_.push_back({info, Clock::now()});
  }
  int CountAt(uint64_t offset) const {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count_if(seen_.begin(), seen_.end(), [&](auto& s) { return s.first.offset == offset; }));
  }
  std::vector<Clock::time_point> TimesAt(uint64_t offset) const {
    std::lock_guard lock(mu_);
    std::vector<Clock::time_point> t;
    for (auto& s : seen_) {
      if (s.first.offset == offset) t.push_back(s.second);
    }
    return t;
  }
  std::optional<uint64_t> MinOffset() const {
    std::lock_guard lock(mu_);
    std::optional<uint64_t> m;
    for (auto& s : seen_) m = std::min(m.value_or(UINT64_MAX), s.first.offset);
    return m;
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return seen_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<ChunkRequestInfo, Clock::time_point>> seen_;
};

// Hashes what it receives and insists on in-order, gap-free delivery.
class HashingSink {
 public:
  explicit HashingSink(uint64_t start = 0) : delivered_(start) {}
  ChunkSink Fn() {
    return [this](const DownloadChunk& c) -> Status {
      if (c.offset != delivered_.load()) {
        return Status::DataLoss(fmt::format("chunk at {} but {} delivered", c.offset, delivered_.load()));
      }
      hash_.Update(c.bytes.data(), c.bytes.size());
      delivered_ += c.bytes.size();
      ++chunks_;
      return Status::Ok();
    };
  }
  uint64_t delivered() const { return delivered_.load(); }
  int chunks() const { return chunks_.load(); }
  std::string Hex() { return hash_.Hex(); }

 private:
  Sha256 hash_;
  std::atomic<uint64_t> delivered_;
  std::atomic<int> chunks_{0};
};

Status WaitOrFail(const std::shared_ptr<DownloadHandle>& d, std::chrono::milliseconds deadline = 30s) {
  std::optional<Status> s = d->WaitFor(deadline);
  return s ? *s : Status::DeadlineExceeded("test deadline: the download did not end");
}

DownloadOptions Fast(uint64_t chunk_size) {
  return {.chunk_size = chunk_size, .request_timeout = 5000ms, .retry = {.base_backoff = 20ms}};
}

TEST(Download, EightReceiversGetIdenticalBytesConcurrently) {
  constexpr int kReceivers = 8;
  const std::string object = RandomBytes(64 << 20);
  const std::string want = Sha256::Of(object);
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  auto freed = std::make_shared<std::atomic<bool>>(false);
  RefId ref = service
                  ->Register(std::make_shared<TrackedBody>(object, freed, /*contiguous=*/true),
                             {.num_receivers = kReceivers})
                  .value();
  std::vector<std::shared_ptr<cell::Cell>> sites;
  std::vector<std::unique_ptr<HashingSink>> sinks;
  std::vector<std::shared_ptr<DownloadHandle>> downloads;
  for (int i = 0; i < kReceivers; ++i) sites.push_back(StartReceiver("site-" + std::to_string(i + 1), owner));
  for (int i = 0; i < kReceivers; ++i) {
    sinks.push_back(std::make_unique<HashingSink>());
    downloads.push_back(Download(sites[i], "server", ref, sinks.back()->Fn(), {.chunk_size = 1 << 20}));
  }
  for (int i = 0; i < kReceivers; ++i) {
    Status s = WaitOrFail(downloads[i], 120s);
    ASSERT_TRUE(s.ok()) << "site-" << i + 1 << ": " << s.ToString();
    EXPECT_EQ(sinks[i]->Hex(), want) << "site-" << i + 1;
    EXPECT_EQ(downloads[i]->stats().bytes, object.size());
    EXPECT_EQ(downloads[i]->stats().retries, 0u);
  }
  auto result = service->WaitDone(ref, 10s);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status, TransactionStatus::kFinished);
  EXPECT_EQ(result->receivers_ok.size(), static_cast<size_t>(kReceivers));
  EXPECT_TRUE(Eventually([&] { return freed->load(); }));
}

TEST(Download, VanishedReceiverBlocksNobodyAndTheTransactionStillEnds) {
  const std::string object = RandomBytes(8 << 20, 7);
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner, {.monitor_interval = 20ms});
  auto freed = std::make_shared<std::atomic<bool>>(false);
  auto ended = std::make_shared<std::promise<TransactionResult>>();
  RefId ref = service
                  ->Register(std::make_shared<TrackedBody>(object, freed),
                             {.num_receivers = 3, .inactivity_timeout = 500ms,
                              .on_done = [ended](const TransactionResult& r) { ended->set_value(r); }})
                  .value();
  // site-3 is slow (each of its chunks waits 30 ms) so it is surely mid-way when it dies.
  service->SetChunkHook([](const ChunkRequestInfo& info) {
    return info.receiver == "site-3" ? ChunkFault{.kind = ChunkFault::kDelay, .delay = 30ms} : ChunkFault{};
  });
  auto a = StartReceiver("site-1", owner), b = StartReceiver("site-2", owner), c = StartReceiver("site-3", owner);
  HashingSink sa, sb, sc;
  auto dc = Download(c, "server", ref, sc.Fn(), Fast(256 << 10));
  ASSERT_TRUE(Eventually([&] { return sc.chunks() >= 2; }));
  auto da = Download(a, "server", ref, sa.Fn(), Fast(256 << 10));
  auto db = Download(b, "server", ref, sb.Fn(), Fast(256 << 10));
  c->Stop();  // vanishes mid-way: its done report never comes
  EXPECT_FALSE(WaitOrFail(dc).ok());
  EXPECT_LT(sc.delivered(), object.size());
  ASSERT_TRUE(WaitOrFail(da).ok());
  ASSERT_TRUE(WaitOrFail(db).ok());
  EXPECT_EQ(sa.Hex(), Sha256::Of(object));
  EXPECT_EQ(sb.Hex(), Sha256::Of(object));

  auto fut = ended->get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  TransactionResult r = fut.get();
  EXPECT_EQ(r.status, TransactionStatus::kTimedOut);
  EXPECT_EQ(r.receivers_ok, (std::vector<std::string>{"site-1", "site-2"}));
  EXPECT_TRUE(Eventually([&] { return freed->load(); }));
}

TEST(Download, TimedOutChunkRequestsAreRetriedWithBackoff) {
  const std::string object = RandomBytes(1 << 20, 3);
  constexpr uint64_t kChunk = 128 << 10;
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(object)).value();
  RequestLog log;
  // The first two requests for the third chunk get no reply in time (dropped).
  service->SetChunkHook([&](const ChunkRequestInfo& info) {
    log.Add(info);
    if (info.offset == 2 * kChunk && log.CountAt(info.offset) <= 2) {
      return ChunkFault{.kind = ChunkFault::kDelay, .delay = 2s};
    }
    return ChunkFault{};
  });
  auto site = StartReceiver("site-1", owner);
  HashingSink sink;
  RetryPolicy retry{.base_backoff = 100ms};
  auto d = Download(site, "server", ref, sink.Fn(), {.chunk_size = kChunk, .request_timeout = 150ms, .retry = retry});
  ASSERT_TRUE(WaitOrFail(d).ok());
  EXPECT_EQ(sink.Hex(), Sha256::Of(object));
  EXPECT_EQ(log.CountAt(2 * kChunk), 3);  // first attempt + 2 retries, same offset
  EXPECT_EQ(log.CountAt(0), 1);
  EXPECT_EQ(d->stats().retries, 2u);
  // A retry never goes out before its attempt timed out and its backoff passed.
  std::vector<Clock::time_point> at = log.TimesAt(2 * kChunk);
  ASSERT_EQ(at.size(), 3u);
  for (int i = 1; i < 3; ++i) {
    EXPECT_GE(at[i] - at[i - 1], 150ms + retry.Backoff(i) - 50ms) << "retry " << i;
  }
}

TEST(Download, GivesUpAfterThreeRetries) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(RandomBytes(64 << 10))).value();
  RequestLog log;
  service->SetChunkHook([&](const ChunkRequestInfo& info) {
    log.Add(info);
    return info.offset == 16384 ? ChunkFault{.kind = ChunkFault::kDelay, .delay = 2s} : ChunkFault{};
  });
  auto site = StartReceiver("site-1", owner);
  HashingSink sink;
  auto d = Download(site, "server", ref, sink.Fn(),
                    {.chunk_size = 16384, .request_timeout = 100ms, .retry = {.base_backoff = 10ms}});
  Status s = WaitOrFail(d);
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_NE(s.message().find("offset 16384 after 3 retries"), std::string::npos) << s.message();
  EXPECT_EQ(log.CountAt(16384), 4);
  EXPECT_EQ(d->stats().retries, 3u);
  EXPECT_EQ(sink.delivered(), 16384u);  // nothing past the failed chunk
  auto r = service->WaitDone(ref, 5s);   // the receiver reported its failure
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->receivers_failed, std::vector<std::string>{"site-1"});
}

TEST(Download, AbortStopsRetriesAtOnce) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(RandomBytes(64 << 10))).value();
  RequestLog log;
  service->SetChunkHook([&](const ChunkRequestInfo& info) {
    log.Add(info);
    return ChunkFault{.kind = ChunkFault::kDelay, .delay = 3s};  // never in time
  });
  auto site = StartReceiver("site-1", owner);
  HashingSink sink;
  auto d = Download(site, "server", ref, sink.Fn(),
                    {.chunk_size = 16384, .request_timeout = 100ms, .retry = {.base_backoff = 10s}});
  ASSERT_TRUE(Eventually([&] { return d->stats().retries == 1; }));  // now waiting 10 s to retry
  d->Abort();
  std::optional<Status> s = d->WaitFor(2s);
  ASSERT_TRUE(s.has_value()) << "Abort did not end the download";
  EXPECT_EQ(s->code(), StatusCode::kAborted);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(log.size(), 1u);  // the retry never went out
  EXPECT_EQ(sink.chunks(), 0);
  d->Abort();  // idempotent
}

TEST(Download, OwnerCancelGivesReceiversAbortedWithoutRetries) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(RandomBytes(1 << 20))).value();
  service->SetChunkHook([](const ChunkRequestInfo&) { return ChunkFault{.kind = ChunkFault::kDelay, .delay = 20ms}; });
  auto site = StartReceiver("site-1", owner);
  HashingSink sink;
  auto d = Download(site, "server", ref, sink.Fn(), Fast(16384));
  ASSERT_TRUE(Eventually([&] { return sink.chunks() >= 1; }));
  ASSERT_TRUE(service->Cancel(ref, "job J1 aborted by admin").ok());
  Status s = WaitOrFail(d);
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s.ToString();
  EXPECT_NE(s.message().find("job J1 aborted by admin"), std::string::npos) << s.message();
  EXPECT_EQ(d->stats().retries, 0u);
}

TEST(Download, ErrorReplyMidDownloadEndsItCleanly) {
  constexpr uint64_t kChunk = 64 << 10;
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(RandomBytes(16 * kChunk))).value();
  service->SetChunkHook([](const ChunkRequestInfo& info) {
    return info.offset == 3 * kChunk ? ChunkFault{.kind = ChunkFault::kError, .error = Status::Internal("disk on fire")}
                                     : ChunkFault{};
  });
  auto site = StartReceiver("site-1", owner);
  HashingSink sink;
  auto d = Download(site, "server", ref, sink.Fn(), Fast(kChunk));
  Status s = WaitOrFail(d);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_NE(s.message().find("disk on fire"), std::string::npos) << s.message();
  EXPECT_LE(sink.delivered(), 3 * kChunk);
  EXPECT_EQ(d->stats().retries, 0u);  // not a retryable error
  auto r = service->WaitDone(ref, 5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->receivers_failed, std::vector<std::string>{"site-1"});
  // The cell is still healthy: a new download of another object works.
  RefId other = service->Register(cell::BytesBody("still fine")).value();
  Result<std::shared_ptr<cell::BodySource>> m = DownloadToMemory(site, "server", other, Fast(4));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->size(), 10u);
}

TEST(Download, SinkErrorStopsTheDownload) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(RandomBytes(1 << 20))).value();
  auto site = StartReceiver("site-1", owner);
  std::atomic<int> calls{0};
  auto d = Download(site, "server", ref,
                    [&](const DownloadChunk&) { return ++calls == 2 ? Status::DataLoss("disk full") : Status::Ok(); },
                    Fast(65536));
  Status s = WaitOrFail(d);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls.load(), 2);  // never called after the error
}

TEST(Download, ResumesFromTheLastOffsetAfterTheOwnerRestarts) {
  constexpr uint64_t kChunk = 256 << 10;
  const std::string object = RandomBytes(32 * kChunk, 11);
  auto owner = StartOwner();
  const std::string address = owner->listen_address();
  auto service = DownloadService::Install(owner);
  const RefId ref = service->Register(cell::BytesBody(object), {.num_receivers = 1}).value();
  service->SetChunkHook([](const ChunkRequestInfo&) { return ChunkFault{.kind = ChunkFault::kDelay, .delay = 15ms}; });

  auto site = StartReceiver("site-1", owner);
  HashingSink sink;
  // Default retry policy (1 s, 2 s, 4 s): the site's cell reconnects after 1 s.
  auto d = Download(site, "server", ref, sink.Fn(), {.chunk_size = kChunk, .request_timeout = 5s});
  ASSERT_TRUE(Eventually([&] { return sink.chunks() >= 6; }));

  owner->Stop();  // the connection drops mid-download
  uint64_t delivered_at_stop = sink.delivered();
  owner = StartOwner(address);  // same port, same name, object re-registered under the same ref
  ASSERT_TRUE(owner);
  auto restarted = DownloadService::Install(owner);
  RequestLog log;
  restarted->SetChunkHook([&](const ChunkRequestInfo& info) {
    log.Add(info);
    return ChunkFault{};
  });
  ASSERT_TRUE(restarted->Register(cell::BytesBody(object), {.num_receivers = 1, .ref_id = ref}).ok());

  Status s = WaitOrFail(d);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(sink.Hex(), Sha256::Of(object));
  EXPECT_GE(d->stats().retries, 1u);
  ASSERT_TRUE(log.MinOffset().has_value());
  EXPECT_GT(delivered_at_stop, 0u);
  EXPECT_GE(*log.MinOffset(), delivered_at_stop) << "bytes received before the restart were requested again";
  EXPECT_LT(log.size(), 32u);
  auto r = restarted->WaitDone(ref, 5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, TransactionStatus::kFinished);
}

TEST(Download, StartOffsetSkipsTheBytesAlreadyHeld) {
  const std::string object = RandomBytes(100000, 5);
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(object)).value();
  RequestLog log;
  service->SetChunkHook([&](const ChunkRequestInfo& info) {
    log.Add(info);
    return ChunkFault{};
  });
  auto site = StartReceiver("site-1", owner);
  HashingSink sink(60000);
  DownloadOptions o = Fast(8192);
  o.start_offset = 60000;
  ASSERT_TRUE(WaitOrFail(Download(site, "server", ref, sink.Fn(), o)).ok());
  EXPECT_EQ(sink.Hex(), Sha256::Of(object.substr(60000)));
  EXPECT_EQ(*log.MinOffset(), 60000u);
}

TEST(Download, ToFileFromAFileBody) {
  auto dir = std::filesystem::temp_directory_path() / ("ember_stream_" + NewRefId());
  std::filesystem::create_directories(dir);
  const std::string object = RandomBytes(3 << 20, 9);
  std::ofstream(dir / "src.bin", std::ios::binary) << object;
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::FileBody((dir / "src.bin").string()).value()).value();
  auto site = StartReceiver("site-1", owner);
  std::string dst = (dir / "dst.bin").string();
  ASSERT_TRUE(DownloadToFile(site, "server", ref, dst, Fast(1 << 20)).ok());
  std::ifstream in(dst, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, object);
  EXPECT_FALSE(std::filesystem::exists(dst + ".part"));
  EXPECT_FALSE(DownloadToFile(site, "server", "R-missing", (dir / "x.bin").string(), Fast(1 << 20)).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "x.bin.part"));
  std::filesystem::remove_all(dir);
}

TEST(Download, EmptyObjectAndOwnCell) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId empty = service->Register(cell::BytesBody("")).value();
  auto site = StartReceiver("site-1", owner);
  Result<std::shared_ptr<cell::BodySource>> m = DownloadToMemory(site, "server", empty, Fast(1024));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->size(), 0u);
  // The owner may download from itself (routed to self, no connection).
  RefId self_ref = service->Register(cell::BytesBody("from me to me")).value();
  Result<std::shared_ptr<cell::BodySource>> self = DownloadToMemory(owner, "server", self_ref, Fast(4));
  ASSERT_TRUE(self.ok()) << self.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*self)->contiguous()), (*self)->size()), "from me to me");
}

TEST(Download, ReportsProgressUpToDone) {
  const std::string object = RandomBytes(1 << 20, 13);
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody(object)).value();
  auto site = StartReceiver("site-1", owner);
  std::mutex mu;
  std::vector<TransferProgress> reports;
  DownloadOptions o = Fast(128 << 10);
  o.progress_interval = 0ms;
  o.on_progress = [&](const TransferProgress& p) {
    std::lock_guard lock(mu);
    reports.push_back(p);
  };
  auto d = Download(site, "server", ref, [](const DownloadChunk&) { return Status::Ok(); }, o);
  ASSERT_TRUE(WaitOrFail(d).ok());
  std::lock_guard lock(mu);
  ASSERT_EQ(reports.size(), 9u);  // 8 chunks + the final report
  EXPECT_EQ(reports[0].bytes_done, 128u << 10);
  EXPECT_EQ(reports[0].bytes_total, object.size());
  EXPECT_TRUE(reports.back().done);
  EXPECT_EQ(reports.back().bytes_done, object.size());
  for (size_t i = 0; i + 1 < reports.size(); ++i) EXPECT_FALSE(reports[i].done);
}

TEST(Download, BadOptionsFailWithoutSendingAnything) {
  auto owner = StartOwner();
  auto service = DownloadService::Install(owner);
  RefId ref = service->Register(cell::BytesBody("abc")).value();
  DownloadOptions o;
  o.window = 0;
  auto d = Download(owner, "server", ref, [](const DownloadChunk&) { return Status::Ok(); }, o);
  EXPECT_EQ(WaitOrFail(d).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(d->stats().requests, 0u);
  auto no_cell = Download(nullptr, "server", ref, [](const DownloadChunk&) { return Status::Ok(); });
  EXPECT_EQ(WaitOrFail(no_cell).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ember::stream
