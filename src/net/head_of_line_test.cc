// Head-of-line: while a 2 GiB transfer saturates one real loopback connection, request /
// reply round trips on that same connection stay fast, and memory on both sides stays
// bounded by the flow-control window (the body is generated on the fly and checked and
// dropped as it arrives). A generous bound is asserted here; bench/transport_bench
// measures the real figures.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <map>
#include <thread>

#include "base/memory.h"
#include "net/connection.h"
#include "net/tcp.h"
#include "net/test_support.h"

namespace ember::net {
namespace {

using namespace std::chrono_literals;
using testing::ConnectionEvents;
using testing::PatternBody;
using testing::PatternCheckSink;
using testing::PatternTally;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kBulkBytes = 2ull << 30;

// The server side: checks "bulk" bodies as they stream, answers "ping" at once.
std::shared_ptr<ConnectionEvents> ServerEvents(std::shared_ptr<PatternTally> tally) {
  auto ev = std::make_shared<ConnectionEvents>();
  ev->intercept = [](const Connection::Ptr& c, IncomingMessage& m) {
    if (m.header.value("topic", "") != "ping") return false;
    Status s = c->Send({{"kind", "reply"}, {"topic", "ping"}, {"req_id", m.header["req_id"]}, {"status", "ok"}},
                       nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return true;
  };
  return ev;
}

ConnectionOptions ServerOptions(std::shared_ptr<PatternTally> tally) {
  ConnectionOptions o;  // defaults = docs/config.md defaults: 1 MiB chunks, 32 MiB window
  o.local_name = "server";
  o.sink_factory = [tally](const wire::Json& head, uint64_t size) -> Result<std::unique_ptr<StreamSink>> {
    if (head.value("topic", "") == "bulk") return std::unique_ptr<StreamSink>(std::make_unique<PatternCheckSink>(tally));
    return MakeBufferingSink(size);
  };
  return o;
}

// Client-side record of reply arrivals, by req_id.
struct Replies {
  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, Clock::time_point> arrived;

  bool Wait(uint64_t req_id, std::chrono::milliseconds limit) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return arrived.contains(req_id); });
  }
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

TEST(HeadOfLine, RoundTripsStayFastAndMemoryBoundedWhileTwoGigabytesShareTheConnection) {
  testing::Watchdog dog(240s, "HeadOfLine test");
  IoPool server_io(1), client_io(1);
  auto tally = std::make_shared<PatternTally>();
  auto server_ev = ServerEvents(tally);
  ConnectionOptions server_opts = ServerOptions(tally);
  auto listener = TcpListener::Listen(server_io, "127.0.0.1:0", [&](std::unique_ptr<Transport> t) {
    auto c = Connection::Create(std::move(t), ConnectionRole::kAcceptor, server_opts, server_ev->Callbacks(server_ev));
    c->Start();
  });
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();

  auto replies = std::make_shared<Replies>();
  auto client_ev = std::make_shared<ConnectionEvents>();
  client_ev->intercept = [replies](const Connection::Ptr&, IncomingMessage& m) {
    std::lock_guard lock(replies->mu);
    replies->arrived[m.header.value("req_id", uint64_t{0})] = Clock::now();
    replies->cv.notify_all();
    return true;
  };
  ConnectionOptions client_opts;
  client_opts.local_name = "site-1";
  DialTcp(client_io.Next(), (*listener)->local_address(), 2s, [&](Result<std::unique_ptr<Transport>> t) {
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    Connection::Create(std::move(*t), ConnectionRole::kConnector, client_opts, client_ev->Callbacks(client_ev))
        ->Start();
  });
  ASSERT_TRUE(client_ev->WaitReady());
  Connection::Ptr client = client_ev->Conn();

  int64_t rss_start = base::CurrentRssBytes();
  int64_t rss_max = rss_start;
  std::promise<Status> bulk_sent;
  ASSERT_TRUE(client->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(kBulkBytes),
                           [&bulk_sent](const Status& s) { bulk_sent.set_value(s); })
                  .ok());

  std::vector<double> rtt_ms;
  int during_transfer = 0;
  for (uint64_t req_id = 1; tally->finished.load() == 0 && req_id <= 5000; ++req_id) {
    auto sent_at = Clock::now();
    ASSERT_TRUE(client->Send({{"kind", "req"}, {"topic", "ping"}, {"req_id", req_id}}, nullptr).ok());
    ASSERT_TRUE(replies->Wait(req_id, 10s)) << "no reply to ping " << req_id << " within 10 s";
    {
      std::lock_guard lock(replies->mu);
      rtt_ms.push_back(std::chrono::duration<double, std::milli>(replies->arrived[req_id] - sent_at).count());
    }
    if (tally->finished.load() == 0) ++during_transfer;
    rss_max = std::max(rss_max, base::CurrentRssBytes());
    std::this_thread::sleep_for(5ms);
  }
  auto f = bulk_sent.get_future();
  ASSERT_EQ(f.wait_for(180s), std::future_status::ready) << "the 2 GiB transfer did not finish";
  EXPECT_TRUE(f.get().ok());
  auto deadline = Clock::now() + 30s;
  while (tally->finished.load() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);

  EXPECT_EQ(tally->finished.load(), 1);
  EXPECT_EQ(tally->bytes.load(), kBulkBytes);
  EXPECT_EQ(tally->bad_chunks.load(), 0u);
  ASSERT_GE(during_transfer, 20) << "too few round trips overlapped the transfer to judge";
  double p50 = Percentile(rtt_ms, 0.50), p99 = Percentile(rtt_ms, 0.99);
  std::printf("round trips under load: n=%zu p50=%.2f ms p99=%.2f ms max=%.2f ms; RSS growth %.1f MB\n",
              rtt_ms.size(), p50, p99, *std::max_element(rtt_ms.begin(), rtt_ms.end()),
              (rss_max - rss_start) / 1e6);
  EXPECT_LT(p99, 500.0);
  EXPECT_LT(rss_max - rss_start, 200ll << 20);

  client->Close(Status::Aborted("test over"));
  (*listener)->Close();
  client_io.Stop();
  server_io.Stop();
}

}  // namespace
}  // namespace ember::net
