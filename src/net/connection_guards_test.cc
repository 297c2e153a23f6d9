// Flow control, guards and liveness of a whole Connection, over the fault-injecting
// in-memory transport (net/fault_transport.h) and over real sockets whose peer stops
// reading. Every wait has a deadline; timings are scaled down (tens of milliseconds).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <future>
#include <thread>

#include "net/connection.h"
#include "net/fault_transport.h"
#include "net/tcp.h"
#include "net/test_support.h"
#include "wire/frame_decoder.h"

namespace ember::net {
namespace {

using namespace std::chrono_literals;
using testing::ConnectionEvents;
using testing::PatternBody;
using wire::FrameType;

// Guard timings for tests: everything off except what a test turns on.
ConnectionOptions Quiet() {
  ConnectionOptions o;
  o.send_timeout = 0ms;
  o.ack_progress_timeout = 0ms;
  o.stall_timeout = 0ms;
  o.heartbeat_interval = 0ms;
  o.check_interval = 20ms;
  o.ack_progress_check_interval = 20ms;
  return o;
}

// Two connections joined by a FaultLink: `a` (site-1) dials `b` (server).
class FaultPairTest : public ::testing::Test {
 protected:
  void Connect(ConnectionOptions a_opts, ConnectionOptions b_opts, size_t buffer_bytes = 256 << 10) {
    FaultPair p = MakeFaultPair(pool_.Next().get_executor(), pool_.Next().get_executor(), buffer_bytes);
    link_ = p.link;
    a_opts.local_name = "site-1";
    b_opts.local_name = "server";
    a_ = Connection::Create(std::move(p.a), ConnectionRole::kConnector, a_opts, a_ev_->Callbacks(a_ev_));
    b_ = Connection::Create(std::move(p.b), ConnectionRole::kAcceptor, b_opts, b_ev_->Callbacks(b_ev_));
    b_->Start();
    a_->Start();
    ASSERT_TRUE(a_ev_->WaitReady());
    ASSERT_TRUE(b_ev_->WaitReady());
  }
  void TearDown() override {
    if (a_) a_->Close(Status::Aborted("test over"));
    if (b_) b_->Close(Status::Aborted("test over"));
    pool_.Stop();
  }

  IoPool pool_{2};
  std::shared_ptr<FaultLink> link_;
  std::shared_ptr<ConnectionEvents> a_ev_ = std::make_shared<ConnectionEvents>();
  std::shared_ptr<ConnectionEvents> b_ev_ = std::make_shared<ConnectionEvents>();
  Connection::Ptr a_, b_;
};

// A kManual sink that hands chunks to a worker thread, which "processes" them slowly and
// only then returns credit; it records the most bytes ever held unprocessed.
class SlowWorkerSink final : public StreamSink {
 public:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<size_t> queue;
    uint64_t held = 0, max_held = 0, processed = 0;
    bool stop = false;
    bool credit_enabled = true;
    StreamCredit credit;
  };
  explicit SlowWorkerSink(std::shared_ptr<Shared> sh) : sh_(std::move(sh)) {}
  Status Write(std::span<const uint8_t> chunk) override {
    std::lock_guard lock(sh_->mu);
    sh_->queue.push_back(chunk.size());
    sh_->held += chunk.size();
    sh_->max_held = std::max(sh_->max_held, sh_->held);
    sh_->cv.notify_all();
    return Status::Ok();
  }
  Result<std::shared_ptr<wire::BodySource>> Finish() override { return std::shared_ptr<wire::BodySource>(); }
  CreditPolicy credit_policy() const override { return CreditPolicy::kManual; }
  void BindCredit(StreamCredit credit) override {
    std::lock_guard lock(sh_->mu);
    sh_->credit = std::move(credit);
  }

  // The worker: takes chunks, sleeps a little per chunk, returns credit.
  static void Work(const std::shared_ptr<Shared>& sh) {
    std::unique_lock lock(sh->mu);
    while (!sh->stop) {
      if (sh->queue.empty() || !sh->credit_enabled) {
        sh->cv.wait_for(lock, 10ms);
        continue;
      }
      size_t n = sh->queue.front();
      sh->queue.pop_front();
      lock.unlock();
      std::this_thread::sleep_for(200us);
      lock.lock();
      sh->held -= n;
      sh->processed += n;
      sh->credit.Consumed(n);
    }
  }

 private:
  std::shared_ptr<Shared> sh_;
};

StreamSinkFactory SlowWorkerFactory(std::shared_ptr<SlowWorkerSink::Shared> sh) {
  return [sh](const wire::Json& head, uint64_t size) -> Result<std::unique_ptr<StreamSink>> {
    if (size < (1 << 20)) return MakeBufferingSink(size);  // small messages: the default
    return std::unique_ptr<StreamSink>(std::make_unique<SlowWorkerSink>(sh));
  };
}

TEST_F(FaultPairTest, ASlowSinkHoldsNoMoreThanTheWindowWhateverTheBodySize) {
  auto sh = std::make_shared<SlowWorkerSink::Shared>();
  std::thread worker([sh] { SlowWorkerSink::Work(sh); });
  ConnectionOptions b = Quiet();
  b.window_size = 1 << 20;
  b.sink_factory = SlowWorkerFactory(sh);
  ConnectionOptions a = Quiet();
  a.chunk_size = 64 << 10;
  Connect(a, b);
  std::promise<Status> sent;
  ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(32 << 20),
                       [&sent](const Status& s) { sent.set_value(s); })
                  .ok());
  auto m = b_ev_->WaitMessage(30s);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->status.ok()) << m->status.ToString();
  auto f = sent.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.get().ok());
  {
    std::lock_guard lock(sh->mu);
    sh->stop = true;
  }
  worker.join();
  EXPECT_LE(sh->max_held, 1u << 20);
  EXPECT_GT(sh->max_held, 0u);
  EXPECT_GT(a_->stats().credit_frames_received, 10u);
}

TEST_F(FaultPairTest, AStreamStarvedOfCreditFailsFastNamingPeerAndStream) {
  auto sh = std::make_shared<SlowWorkerSink::Shared>();
  sh->credit_enabled = false;  // the worker never processes anything
  ConnectionOptions b = Quiet();
  b.window_size = 1 << 20;
  b.sink_factory = SlowWorkerFactory(sh);
  ConnectionOptions a = Quiet();
  a.ack_progress_timeout = 300ms;
  a.ack_progress_check_interval = 50ms;
  Connect(a, b);
  std::promise<Status> sent;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(8 << 20),
                       [&sent](const Status& s) { sent.set_value(s); })
                  .ok());
  auto f = sent.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  Status s = f.get();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_NE(s.message().find("stream 1 to server"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("no flow-control credit"), std::string::npos) << s.ToString();
  EXPECT_LT(took, 2s);
  EXPECT_EQ(a_->stats().streams_aborted_for_credit, 1u);
  // The connection survives and carries the next message.
  ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "after"}}, wire::BytesBody("ok")).ok());
  auto m = b_ev_->WaitMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->header["topic"], "after");
  EXPECT_FALSE(a_->closed());
}

TEST_F(FaultPairTest, StreamsWithoutCreditDoNotHoldBackOtherMessages) {
  auto sh = std::make_shared<SlowWorkerSink::Shared>();
  sh->credit_enabled = false;
  ConnectionOptions b = Quiet();
  b.window_size = 1 << 20;
  b.sink_factory = SlowWorkerFactory(sh);
  Connect(Quiet(), b);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(64 << 20)).ok());
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "small"}, {"i", i}}, wire::BytesBody("x")).ok());
    auto m = b_ev_->WaitMessage(2s);
    ASSERT_TRUE(m.has_value()) << "small message " << i << " stuck behind starved streams";
    EXPECT_EQ(m->header["i"], i);
  }
}

TEST_F(FaultPairTest, AStalledWriteOnlyWarnsWhenCloseIsDisabled) {
  ConnectionOptions a = Quiet();
  a.stall_timeout = 100ms;
  a.check_interval = 25ms;
  a.stall_consecutive_checks = 2;
  a.close_stalled = false;
  Connect(a, Quiet(), 64 << 10);
  link_->PauseReading(FaultLink::kB, true);
  ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(4 << 20)).ok());
  std::this_thread::sleep_for(500ms);
  EXPECT_GE(a_->stats().stall_warnings, 4u);
  EXPECT_FALSE(a_ev_->IsClosed());
  link_->PauseReading(FaultLink::kB, false);  // the peer reads again: the message gets through
  auto m = b_ev_->WaitMessage(10s);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body->size(), 4u << 20);
}

TEST_F(FaultPairTest, AStalledWriteClosesAfterTheConsecutiveChecksWhenEnabled) {
  ConnectionOptions a = Quiet();
  a.stall_timeout = 100ms;
  a.check_interval = 25ms;
  a.stall_consecutive_checks = 3;
  a.close_stalled = true;
  Connect(a, Quiet(), 64 << 10);
  link_->PauseReading(FaultLink::kB, true);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(4 << 20)).ok());
  auto closed = a_ev_->WaitClosed(5s);
  ASSERT_TRUE(closed.has_value());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(closed->code(), StatusCode::kUnavailable);
  EXPECT_NE(closed->message().find("stalled"), std::string::npos) << closed->ToString();
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 1s);  // 100 ms + 3 checks of 25 ms, plus scheduling slack
  EXPECT_EQ(a_->stats().stall_warnings, 3u);
}

TEST_F(FaultPairTest, AWriteWithoutProgressForTheSendTimeoutClosesTheConnection) {
  ConnectionOptions a = Quiet();
  a.send_timeout = 200ms;
  Connect(a, Quiet(), 64 << 10);
  link_->PauseReading(FaultLink::kB, true);
  std::promise<Status> sent;
  ASSERT_TRUE(a_->Send({{"kind", "fire"}}, std::make_shared<PatternBody>(4 << 20),
                       [&sent](const Status& s) { sent.set_value(s); })
                  .ok());
  auto closed = a_ev_->WaitClosed(5s);
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(closed->message().find("made no progress"), std::string::npos) << closed->ToString();
  auto f = sent.get_future();
  ASSERT_EQ(f.wait_for(1s), std::future_status::ready);
  EXPECT_EQ(f.get().code(), StatusCode::kUnavailable);
}

TEST_F(FaultPairTest, AnIdleConnectionPingsAndStaysUp) {
  ConnectionOptions o = Quiet();
  o.heartbeat_interval = 50ms;
  o.check_interval = 10ms;
  Connect(o, o);
  std::this_thread::sleep_for(400ms);
  EXPECT_FALSE(a_ev_->IsClosed());
  EXPECT_FALSE(b_ev_->IsClosed());
  EXPECT_GE(a_->stats().pings_sent + b_->stats().pings_sent, 2u);
}

TEST_F(FaultPairTest, APeerThatFallsSilentIsDeclaredDead) {
  ConnectionOptions o = Quiet();
  o.heartbeat_interval = 50ms;
  o.heartbeat_misses = 3;
  o.check_interval = 10ms;
  Connect(o, Quiet());
  link_->DropWrites(FaultLink::kB, true);  // b's PONGs vanish
  auto start = std::chrono::steady_clock::now();
  auto closed = a_ev_->WaitClosed(5s);
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->code(), StatusCode::kUnavailable);
  EXPECT_NE(closed->message().find("peer considered dead"), std::string::npos) << closed->ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_GE(a_->stats().pings_sent, 1u);
}

TEST_F(FaultPairTest, AResetFailsInFlightMessagesAndClosesBothSides) {
  Connect(Quiet(), Quiet(), 64 << 10);
  link_->PauseReading(FaultLink::kB, true);
  std::promise<Status> sent;
  ASSERT_TRUE(a_->Send({{"kind", "fire"}}, std::make_shared<PatternBody>(4 << 20),
                       [&sent](const Status& s) { sent.set_value(s); })
                  .ok());
  std::this_thread::sleep_for(50ms);
  link_->Reset();
  auto ca = a_ev_->WaitClosed();
  auto cb = b_ev_->WaitClosed();
  ASSERT_TRUE(ca && cb);
  EXPECT_EQ(ca->code(), StatusCode::kUnavailable);
  auto f = sent.get_future();
  ASSERT_EQ(f.wait_for(1s), std::future_status::ready);
  EXPECT_EQ(f.get().code(), StatusCode::kUnavailable);
}

TEST_F(FaultPairTest, ADelayedLinkStillDeliversInOrder) {
  Connect(Quiet(), Quiet());
  link_->SetDelay(FaultLink::kA, 30ms);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(a_->Send({{"kind", "fire"}, {"i", i}}, wire::BytesBody(std::string(3000, 'x'))).ok());
  }
  for (int i = 0; i < 5; ++i) {
    auto m = b_ev_->WaitMessage();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->header["i"], i);
  }
}

// ---- real sockets whose peer stops reading -------------------------------------------

// A hand-written peer on a plain socket: says HELLO (granting a huge window) and then
// reads nothing unless told to, with a small receive buffer so the sender's socket
// buffers fill quickly.
class SilentPeerListener {
 public:
  SilentPeerListener() : acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    int small = 16 << 10;
    setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    address_ = "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  const std::string& address() const { return address_; }

  // Accepts one connection, exchanges HELLO; if `keep_reading`, then reads and decodes
  // frames until `frames_wanted` frames arrived (returned), else just holds the socket.
  std::vector<wire::Frame> Serve(bool keep_reading, size_t frames_wanted, std::chrono::milliseconds limit) {
    asio::ip::tcp::socket s(io_);
    acceptor_.accept(s);
    timeval tv{.tv_sec = 0, .tv_usec = 200000};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    wire::FrameDecoder decoder;
    std::vector<wire::Frame> frames;
    std::vector<uint8_t> buf(64 << 10);
    ReadUntil(s, decoder, frames, buf, 1, 3s);  // their HELLO
    asio::write(s, asio::buffer(wire::EncodeFrame(FrameType::kHello, 0, 0,
                                                  R"({"name":"server","version":1,"window":1073741824})")));
    frames.clear();
    if (!keep_reading) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, limit, [this] { return release_; });
      return {};
    }
    ReadUntil(s, decoder, frames, buf, frames_wanted, limit);
    return frames;
  }
  void Release() {
    std::lock_guard lock(mu_);
    release_ = true;
    cv_.notify_all();
  }

 private:
  static void ReadUntil(asio::ip::tcp::socket& s, wire::FrameDecoder& d, std::vector<wire::Frame>& frames,
                        std::vector<uint8_t>& buf, size_t n, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (frames.size() < n && std::chrono::steady_clock::now() < deadline) {
      // Plain recv: SO_RCVTIMEO makes it return so the deadline is checked (asio's
      // blocking read_some would poll for ever instead).
      ssize_t got = ::recv(s.native_handle(), buf.data(), buf.size(), 0);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (got <= 0) return;
      if (!d.Feed({buf.data(), static_cast<size_t>(got)}, &frames).ok()) return;
    }
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::string address_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool release_ = false;
};

class SilentPeerTest : public ::testing::Test {
 protected:
  // Dials the listener as "site-1" with `opts`; returns the ready connection.
  Connection::Ptr Dial(const std::string& address, ConnectionOptions opts, std::shared_ptr<ConnectionEvents> ev) {
    opts.local_name = "site-1";
    std::promise<Connection::Ptr> made;
    DialTcp(pool_.Next(), address, 2s, [&](Result<std::unique_ptr<Transport>> t) {
      if (!t.ok()) return made.set_value(nullptr);
      auto c = Connection::Create(std::move(*t), ConnectionRole::kConnector, opts, ev->Callbacks(ev));
      c->Start();
      made.set_value(c);
    });
    auto f = made.get_future();
    if (f.wait_for(3s) != std::future_status::ready) return nullptr;
    auto c = f.get();
    if (c && !ev->WaitReady()) return nullptr;
    return c;
  }
  void TearDown() override { pool_.Stop(); }
  IoPool pool_{1};
};

ConnectionOptions StallGuards(bool close) {
  ConnectionOptions o = Quiet();
  o.stall_timeout = 200ms;
  o.check_interval = 50ms;
  o.stall_consecutive_checks = 3;
  o.close_stalled = close;
  return o;
}

TEST_F(SilentPeerTest, ClosesAStalledSocketAndANewConnectionCarriesLaterTraffic) {
  SilentPeerListener peer;
  auto first = std::async(std::launch::async, [&] { return peer.Serve(false, 0, 10s); });
  auto ev = std::make_shared<ConnectionEvents>();
  Connection::Ptr c = Dial(peer.address(), StallGuards(true), ev);
  ASSERT_NE(c, nullptr);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(c->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(256 << 20)).ok());
  auto closed = ev->WaitClosed(10s);
  ASSERT_TRUE(closed.has_value()) << "the stalled connection was not closed";
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_NE(closed->message().find("stalled"), std::string::npos) << closed->ToString();
  EXPECT_LT(took, 3s);  // 200 ms + 3 checks of 50 ms once the socket buffers are full
  EXPECT_GE(c->stats().stall_warnings, 3u);
  peer.Release();
  first.get();

  // What a cell does next: reconnect; later traffic goes over the new connection.
  auto second = std::async(std::launch::async, [&] { return peer.Serve(true, 1, 5s); });
  auto ev2 = std::make_shared<ConnectionEvents>();
  Connection::Ptr c2 = Dial(peer.address(), StallGuards(true), ev2);
  ASSERT_NE(c2, nullptr);
  ASSERT_TRUE(c2->Send({{"kind", "fire"}, {"topic", "later"}}, nullptr).ok());
  std::vector<wire::Frame> frames = second.get();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].header.type, FrameType::kHead);
  EXPECT_NE(frames[0].payload.find("later"), std::string::npos);
  c2->Close(Status::Aborted("test over"));
}

TEST_F(SilentPeerTest, OnlyWarnsAboutAStalledSocketWhenCloseIsDisabled) {
  SilentPeerListener peer;
  auto served = std::async(std::launch::async, [&] { return peer.Serve(false, 0, 10s); });
  auto ev = std::make_shared<ConnectionEvents>();
  Connection::Ptr c = Dial(peer.address(), StallGuards(false), ev);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<PatternBody>(256 << 20)).ok());
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (c->stats().stall_warnings < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(c->stats().stall_warnings, 5u);  // detected, more than the 3 that would close
  EXPECT_FALSE(ev->IsClosed());
  c->Close(Status::Aborted("test over"));
  peer.Release();
  served.get();
}

TEST_F(SilentPeerTest, DoesNotDeclareDeadAPeerThatNeverPromisedToAnswerPing) {
  // The Python link answers PING only while it waits for a reply; its HELLO does not
  // promise more, so long silences (a training epoch) must not drop it.
  SilentPeerListener peer;
  auto served = std::async(std::launch::async, [&] { return peer.Serve(false, 0, 10s); });
  ConnectionOptions o = Quiet();
  o.heartbeat_interval = 30ms;
  o.check_interval = 10ms;
  auto ev = std::make_shared<ConnectionEvents>();
  Connection::Ptr c = Dial(peer.address(), o, ev);
  ASSERT_NE(c, nullptr);
  std::this_thread::sleep_for(400ms);
  EXPECT_FALSE(ev->IsClosed());
  EXPECT_GE(c->stats().pings_sent, 1u);
  c->Close(Status::Aborted("test over"));
  peer.Release();
  served.get();
}

}  // namespace
}  // namespace ember::net
