// Cells on real loopback sockets. Every wait has a deadline so a bug fails, not hangs.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include "cell/cell.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace ember::cell {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::shared_ptr<Cell> MustStart(CellOptions o) {
  auto c = Cell::Start(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : nullptr;
}

std::shared_ptr<Cell> StartServer(std::string token = "") {
  return MustStart({.name = "server", .listen = "127.0.0.1:0", .token = std::move(token)});
}

std::shared_ptr<Cell> StartChild(const std::string& name, const std::shared_ptr<Cell>& parent,
                                 bool listen = false) {
  return MustStart({.name = name, .listen = listen ? "127.0.0.1:0" : "", .parent = parent->listen_address(),
                    .connect_timeout = 3000ms});
}

std::string BodyString(const Message& m) {
  return m.body ? std::string(reinterpret_cast<const char*>(m.body->contiguous()), m.body->size()) : "";
}

// Echo: replies with the request's h plus who answered and the sender; body echoed.
void AddEcho(const std::shared_ptr<Cell>& cell) {
  std::string me = cell->name();
  cell->Handle("echo", [me](Message m, Responder r) {
    Json h = m.h();
    h["by"] = me;
    h["from"] = r.peer();
    h["hops"] = m.header.value("hops", 0);
    r.Reply(h, m.body);
  });
}

// Keeps responders alive without answering them.
struct Parked {
  std::mutex mu;
  std::vector<Responder> responders;
  void Add(Responder r) {
    std::lock_guard lock(mu);
    responders.push_back(std::move(r));
  }
};

uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

TEST(Cell, ChildRequestGetsTheServersReply) {
  auto server = StartServer();
  AddEcho(server);
  auto site = StartChild("site-1", server);
  Result<Message> reply = site->Request("server", Message::Make("echo", {{"x", 1}}, BytesBody("body")), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["x"], 1);
  EXPECT_EQ(reply->h()["by"], "server");
  EXPECT_EQ(reply->h()["from"], "site-1");
  EXPECT_EQ(BodyString(*reply), "body");
  EXPECT_TRUE(reply->status().ok());
}

TEST(Cell, ServerRequestReachesAConnectedChild) {
  auto server = StartServer();
  auto site = StartChild("site-1", server);
  AddEcho(site);
  Result<Message> reply = server->Request("site-1", Message::Make("echo"), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["by"], "site-1");
}

TEST(Cell, RequestToItselfIsServedByItsOwnHandler) {
  auto server = StartServer();
  AddEcho(server);
  Result<Message> reply = server->Request("server", Message::Make("echo"), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["by"], "server");
}

TEST(Cell, FireReachesTheHandler) {
  std::promise<std::string> got;
  auto server = StartServer();
  server->Handle("note", [&got](Message m, Responder) { got.set_value(m.h().value("text", "") + "@" + m.src()); });
  auto site = StartChild("site-1", server);
  ASSERT_TRUE(site->Fire("server", Message::Make("note", {{"text", "hi"}})).ok());
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), "hi@site-1");
}

TEST(Cell, ForwardsBetweenServerAndAGrandchildThroughTheSite) {
  auto server = StartServer();
  AddEcho(server);
  auto site = StartChild("site-1", server, /*listen=*/true);
  auto job = StartChild("site-1.job-7", site);
  AddEcho(job);

  Result<Message> up = job->Request("server", Message::Make("echo", {}, BytesBody("up")), 5s);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->h()["by"], "server");
  EXPECT_EQ(up->h()["from"], "site-1.job-7");
  EXPECT_EQ(up->h()["hops"], 1);
  EXPECT_EQ(BodyString(*up), "up");

  Result<Message> down = server->Request("site-1.job-7", Message::Make("echo", {}, BytesBody("down")), 5s);
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  EXPECT_EQ(down->h()["by"], "site-1.job-7");
  EXPECT_EQ(down->h()["from"], "server");
  EXPECT_EQ(BodyString(*down), "down");
}

TEST(Cell, LargeBodyArrivesIntactWhileSmallRequestsKeepCompleting) {
  constexpr size_t kSize = 200u << 20;
  std::atomic<int64_t> big_received_ns{0};
  auto server = StartServer();
  AddEcho(server);
  server->Handle("big", [&big_received_ns](Message m, Responder r) {
    big_received_ns = Clock::now().time_since_epoch().count();
    uint64_t hash = m.body ? Fnv1a(m.body->contiguous(), m.body->size()) : 0;
    r.Reply({{"hash", hash}, {"size", m.body_size()}});
  });
  auto site = StartChild("site-1", server);

  std::string data(kSize, '\0');
  for (size_t i = 0; i < kSize; i += 8) data[i] = static_cast<char>(i * 2654435761u >> 13);
  uint64_t expected = Fnv1a(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  std::promise<Result<Message>> big;
  site->RequestAsync("server", Message::Make("big", {}, BytesBody(std::move(data))), 9s,
                     [&big](Result<Message> r) { big.set_value(std::move(r)); });

  auto big_done = big.get_future();
  std::vector<int64_t> small_done_ns;
  while (big_done.wait_for(0s) != std::future_status::ready && small_done_ns.size() < 10000) {
    Result<Message> r = site->Request("server", Message::Make("echo"), 5s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    small_done_ns.push_back(Clock::now().time_since_epoch().count());
  }
  ASSERT_EQ(big_done.wait_for(9s), std::future_status::ready);
  Result<Message> reply = big_done.get();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["size"], kSize);
  EXPECT_EQ(reply->h()["hash"], expected);
  size_t during = 0;
  for (int64_t t : small_done_ns) during += t < big_received_ns.load();
  EXPECT_GE(during, 3u) << "small requests completed while the 200 MB body was in flight: " << during;
}

TEST(Cell, TimesOutWhenTheHandlerNeverReplies) {
  Parked parked;  // outlives the cells whose handlers fill it
  auto server = StartServer();
  server->Handle("hang", [&parked](Message, Responder r) { parked.Add(std::move(r)); });
  auto site = StartChild("site-1", server);
  auto start = Clock::now();
  Result<Message> reply = site->Request("server", Message::Make("hang"), 300ms);
  EXPECT_EQ(reply.status().code(), StatusCode::kDeadlineExceeded) << reply.status().ToString();
  EXPECT_LT(Clock::now() - start, 2s);
  site->Stop();
  server->Stop();
}

TEST(Cell, ReportsAnUnreachableDestination) {
  auto server = StartServer();
  auto site = StartChild("site-1", server);
  Result<Message> via_server = site->Request("site-9", Message::Make("echo"), 5s);
  EXPECT_EQ(via_server.status().code(), StatusCode::kUnavailable) << via_server.status().ToString();
  EXPECT_NE(via_server.status().message().find("no route"), std::string::npos) << via_server.status().ToString();
  Result<Message> from_root = server->Request("site-9", Message::Make("echo"), 5s);
  EXPECT_EQ(from_root.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(server->Fire("nobody", Message::Make("x")).code(), StatusCode::kUnavailable);
  Result<Message> under_site = site->Request("site-1.gone", Message::Make("echo"), 5s);
  EXPECT_EQ(under_site.status().code(), StatusCode::kUnavailable);
}

TEST(Cell, ReportsAMissingHandler) {
  auto server = StartServer();
  auto site = StartChild("site-1", server);
  Result<Message> reply = site->Request("server", Message::Make("nope"), 5s);
  EXPECT_EQ(reply.status().code(), StatusCode::kUnimplemented) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("no handler"), std::string::npos);
}

TEST(Cell, MapsARemoteErrorToItsStatusCode) {
  auto server = StartServer();
  server->Handle("fail", [](Message, Responder r) { r.Error(StatusCode::kNotFound, "no such job"); });
  server->Handle("throw", [](Message, Responder) -> void { throw std::runtime_error("boom"); });
  auto site = StartChild("site-1", server);
  Result<Message> failed = site->Request("server", Message::Make("fail"), 5s);
  EXPECT_EQ(failed.status().code(), StatusCode::kNotFound);
  EXPECT_NE(failed.status().message().find("no such job"), std::string::npos) << failed.status().ToString();
  Result<Message> thrown = site->Request("server", Message::Make("throw"), 5s);
  EXPECT_EQ(thrown.status().code(), StatusCode::kInternal) << thrown.status().ToString();
}

TEST(Cell, RefusesAChildWithTheWrongToken) {
  auto server = StartServer("s3cret");
  auto start = Clock::now();
  auto bad = Cell::Start({.name = "site-1", .parent = server->listen_address(), .parent_token = "guess",
                          .connect_timeout = 3000ms});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad token"), std::string::npos) << bad.status().ToString();
  EXPECT_LT(Clock::now() - start, 2s);
  auto good = Cell::Start({.name = "site-1", .parent = server->listen_address(), .parent_token = "s3cret",
                           .connect_timeout = 3000ms});
  EXPECT_TRUE(good.ok()) << good.status().ToString();
}

TEST(Cell, FailsToStartWhenTheParentIsNotThere) {
  auto start = Clock::now();
  auto c = Cell::Start({.name = "site-1", .parent = "127.0.0.1:1", .connect_timeout = 1000ms});
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST(Cell, FailsPendingRequestsPromptlyWhenThePeerDisconnects) {
  Parked parked;  // outlives the cells whose handlers fill it
  auto server = StartServer();
  server->Handle("hang", [&parked](Message, Responder r) { parked.Add(std::move(r)); });
  auto site = StartChild("site-1", server);
  std::promise<Result<Message>> pending;
  site->RequestAsync("server", Message::Make("hang"), 8s, [&pending](Result<Message> r) { pending.set_value(r); });
  std::this_thread::sleep_for(100ms);  // let the request reach the server
  auto start = Clock::now();
  server->Stop();
  auto f = pending.get_future();
  ASSERT_EQ(f.wait_for(3s), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - start, 2s);
}

TEST(Cell, StopFailsItsOwnPendingRequestsAndIsIdempotent) {
  Parked parked;  // outlives the cells whose handlers fill it
  auto server = StartServer();
  server->Handle("hang", [&parked](Message, Responder r) { parked.Add(std::move(r)); });
  auto site = StartChild("site-1", server);
  std::promise<Result<Message>> pending;
  site->RequestAsync("server", Message::Make("hang"), 8s, [&pending](Result<Message> r) { pending.set_value(r); });
  auto start = Clock::now();
  site->Stop();
  site->Stop();
  auto f = pending.get_future();
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(site->Request("server", Message::Make("hang"), 1s).status().code(), StatusCode::kUnavailable);
}

// Records OnPeer events; waits have deadlines.
struct PeerLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;  // "+name" / "-name"

  Cell::PeerCallback Callback() {
    return [this](const std::string& peer, bool up) {
      std::lock_guard lock(mu);
      events.push_back((up ? "+" : "-") + peer);
      cv.notify_all();
    };
  }
  bool WaitFor(const std::string& event, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return std::find(events.begin(), events.end(), event) != events.end(); });
  }
};

TEST(Cell, ReportsChildrenConnectingAndDisconnecting) {
  PeerLog log;
  auto server = StartServer();
  server->OnPeer(log.Callback());
  auto site = StartChild("site-1", server);
  EXPECT_TRUE(log.WaitFor("+site-1", 3s));
  site->Stop();
  EXPECT_TRUE(log.WaitFor("-site-1", 3s));
  server->Stop();
}

TEST(Cell, ReconnectsAfterTheParentRestartsOnTheSamePort) {
  PeerLog log;
  auto server = StartServer();
  std::string address = server->listen_address();
  auto site = StartChild("site-1", server);
  site->OnPeer(log.Callback());
  server->Stop();
  server.reset();
  ASSERT_TRUE(log.WaitFor("-server", 3s));

  server = MustStart({.name = "server", .listen = address});
  ASSERT_NE(server, nullptr);
  AddEcho(server);
  ASSERT_TRUE(log.WaitFor("+server", 5s)) << "no reconnect within 5 s";
  Result<Message> reply = site->Request("server", Message::Make("echo"), 2s);
  EXPECT_TRUE(reply.ok()) << reply.status().ToString();
}

TEST(Cell, RoutesToTheNewestConnectionOfTheSameName) {
  auto server = StartServer();
  auto first = StartChild("site-1", server);
  first->Handle("who", [](Message, Responder r) { r.Reply({{"me", "first"}}); });
  auto second = StartChild("site-1", server);
  second->Handle("who", [](Message, Responder r) { r.Reply({{"me", "second"}}); });
  Result<Message> reply = server->Request("site-1", Message::Make("who"), 3s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["me"], "second");
  first->Stop();
  second->Stop();
}

TEST(Cell, AnswersInternalWhenAHandlerDropsTheResponder) {
  auto server = StartServer();
  server->Handle("drop", [](Message, Responder) {});
  auto site = StartChild("site-1", server);
  Result<Message> reply = site->Request("server", Message::Make("drop"), 3s);
  EXPECT_EQ(reply.status().code(), StatusCode::kInternal) << reply.status().ToString();
}

}  // namespace
}  // namespace ember::cell
