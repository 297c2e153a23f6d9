// Connection over real loopback sockets.
// Options are written as partial designated initializers, which GCC 12 warns about.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "net/connection.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <asio/connect.hpp>
#include <asio/write.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <thread>
#include <utility>

#include "net/tcp.h"
#include "net/test_support.h"
#include "wire/frame_decoder.h"

namespace ember::net {
namespace {

using namespace std::chrono_literals;
using wire::FrameType;

using Events = testing::ConnectionEvents;

std::string BodyOf(const IncomingMessage& m) {
  return m.body ? std::string(reinterpret_cast<const char*>(m.body->contiguous()), m.body->size()) : "";
}

class ConnectionTest : public ::testing::Test {
 protected:
  void Listen(ConnectionOptions opts) {
    opts.local_name = "server";
    auto ev = server_;
    auto l = TcpListener::Listen(pool_, "127.0.0.1:0", [opts, ev](std::unique_ptr<Transport> t) {
      auto c = Connection::Create(std::move(t), ConnectionRole::kAcceptor, opts, ev->Callbacks(ev));
      Events::Update(ev, [&c](Events& e) { e.conn = c; });
      c->Start();
    });
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    listener_ = *l;
  }

  void Dial(ConnectionOptions opts) {
    opts.local_name = "site-1";
    auto ev = client_;
    DialTcp(pool_.Next(), listener_->local_address(), 2s,
            [opts, ev](Result<std::unique_ptr<Transport>> t) {
              ASSERT_TRUE(t.ok()) << t.status().ToString();
              auto c = Connection::Create(std::move(*t), ConnectionRole::kConnector, opts,
                                          ev->Callbacks(ev));
              Events::Update(ev, [&c](Events& e) { e.conn = c; });
              c->Start();
            });
  }

  void TearDown() override {
    if (listener_) listener_->Close();
    for (auto& ev : {server_, client_}) {
      std::lock_guard lock(ev->mu);
      if (ev->conn) ev->conn->Close(Status::Aborted("test over"));
    }
    pool_.Stop();
  }

  IoPool pool_{2};
  std::shared_ptr<Events> server_ = std::make_shared<Events>();
  std::shared_ptr<Events> client_ = std::make_shared<Events>();
  std::shared_ptr<TcpListener> listener_;
};

TEST_F(ConnectionTest, ExchangesHelloAndMessagesBothWays) {
  Listen({});
  Dial({});
  ASSERT_TRUE(client_->WaitReady());
  ASSERT_TRUE(server_->WaitReady());
  EXPECT_EQ(client_->Conn()->peer_name(), "server");
  EXPECT_EQ(server_->Conn()->peer_name(), "site-1");

  ASSERT_TRUE(client_->Conn()->Send({{"kind", "fire"}, {"topic", "up"}}, wire::BytesBody("hello")).ok());
  auto up = server_->WaitMessage();
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->header["topic"], "up");
  EXPECT_EQ(up->header["body_size"], 5);
  EXPECT_EQ(BodyOf(*up), "hello");

  ASSERT_TRUE(server_->Conn()->Send({{"kind", "fire"}, {"topic", "down"}}, nullptr).ok());
  auto down = client_->WaitMessage();
  ASSERT_TRUE(down.has_value());
  EXPECT_EQ(down->header["topic"], "down");
  EXPECT_EQ(down->body, nullptr);
}

TEST_F(ConnectionTest, DeliversASmallMessageBeforeALargeBodySentEarlier) {
  Listen({});
  Dial({.chunk_size = 64 << 10});
  ASSERT_TRUE(client_->WaitReady());
  ASSERT_TRUE(server_->WaitReady());
  auto c = client_->Conn();
  ASSERT_TRUE(c->Send({{"kind", "fire"}, {"topic", "big"}}, wire::BytesBody(std::string(64 << 20, 'x'))).ok());
  ASSERT_TRUE(c->Send({{"kind", "fire"}, {"topic", "small"}}, wire::BytesBody("s")).ok());
  auto first = server_->WaitMessage();
  auto second = server_->WaitMessage();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->header["topic"], "small");
  EXPECT_EQ(second->header["topic"], "big");
  EXPECT_EQ(second->body->size(), 64u << 20);
}

// A live body fed from another thread in uneven steps (byte i = i % 251), as a relay's is.
class FedBody final : public wire::BodySource {
 public:
  explicit FedBody(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  uint64_t available() const override {
    std::lock_guard lock(mu_);
    return fed_;
  }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    size_t n = std::min<uint64_t>(out.size(), available() - offset);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((offset + i) % 251);
    return n;
  }
  void NotifyAvailable(uint64_t offset, std::function<void()> wake) const override {
    {
      std::lock_guard lock(mu_);
      if (fed_ <= offset) {
        wake_ = std::move(wake);
        return;
      }
    }
    wake();
  }
  void Feed(uint64_t n) {
    std::function<void()> wake;
    {
      std::lock_guard lock(mu_);
      fed_ = std::min(size_, fed_ + n);
      wake = std::exchange(wake_, nullptr);
    }
    if (wake) wake();
  }

 private:
  const uint64_t size_;
  mutable std::mutex mu_;
  uint64_t fed_ = 0;
  mutable std::function<void()> wake_;
};

TEST_F(ConnectionTest, SendsALiveBodyAsItsBytesArrive) {
  Listen({});
  Dial({.chunk_size = 64 << 10});
  ASSERT_TRUE(client_->WaitReady());
  ASSERT_TRUE(server_->WaitReady());
  const uint64_t size = (4 << 20) + 12345;
  auto body = std::make_shared<FedBody>(size);
  std::promise<Status> sent;
  ASSERT_TRUE(client_->Conn()->Send({{"kind", "fire"}, {"topic", "live"}}, body,
                                    [&sent](const Status& s) { sent.set_value(s); }).ok());
  std::thread feeder([&] {
    for (uint64_t fed = 0, step = 1000; fed < size; fed += step, step = step * 3 % 200000 + 1) {
      body->Feed(step);
      if (step % 7 == 0) std::this_thread::sleep_for(100us);
    }
  });
  auto m = server_->WaitMessage();
  feeder.join();
  ASSERT_TRUE(m.has_value());
  ASSERT_TRUE(m->status.ok()) << m->status.ToString();
  ASSERT_EQ(m->body->size(), size);
  const uint8_t* p = m->body->contiguous();
  uint64_t bad = 0;
  for (uint64_t i = 0; i < size; ++i) bad += p[i] != static_cast<uint8_t>(i % 251);
  EXPECT_EQ(bad, 0u);
  auto f = sent.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.get().ok());
}

TEST_F(ConnectionTest, RefusesAWrongTokenWithGoaway) {
  Listen({.required_token = "right"});
  Dial({.token = "wrong"});
  std::optional<Status> closed = client_->WaitClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(closed->message().find("bad token"), std::string::npos) << closed->ToString();
  EXPECT_FALSE(client_->ready);
  std::optional<Status> server_closed = server_->WaitClosed();
  ASSERT_TRUE(server_closed.has_value());
  EXPECT_FALSE(server_->ready);
}

TEST_F(ConnectionTest, AcceptsTheRightToken) {
  Listen({.required_token = "right"});
  Dial({.token = "right"});
  EXPECT_TRUE(client_->WaitReady());
}

TEST_F(ConnectionTest, RejectsATooLargeBodyButKeepsTheConnection) {
  Listen({.max_body_size = 1000});
  Dial({});
  ASSERT_TRUE(client_->WaitReady());
  auto c = client_->Conn();
  ASSERT_TRUE(c->Send({{"kind", "req"}, {"topic", "big"}}, wire::BytesBody(std::string(5000, 'x'))).ok());
  ASSERT_TRUE(c->Send({{"kind", "req"}, {"topic", "ok"}}, wire::BytesBody("y")).ok());
  auto big = server_->WaitMessage();
  auto ok = server_->WaitMessage();
  ASSERT_TRUE(big && ok);
  EXPECT_EQ(big->status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ok->header["topic"], "ok");
  EXPECT_TRUE(ok->status.ok());
  EXPECT_FALSE(c->closed());
}

TEST_F(ConnectionTest, FailsSendFastOnceClosed) {
  Listen({});
  Dial({});
  ASSERT_TRUE(client_->WaitReady());
  server_->Conn()->Shutdown("bye");
  std::optional<Status> closed = client_->WaitClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->code(), StatusCode::kUnavailable);
  EXPECT_NE(closed->message().find("bye"), std::string::npos) << closed->ToString();
  EXPECT_EQ(client_->Conn()->Send({{"kind", "fire"}}, nullptr).code(), StatusCode::kUnavailable);
}

// A hand-written peer on a plain socket, to see exactly what goes over the wire.
class RawPeer {
 public:
  explicit RawPeer(const std::string& address) : socket_(io_) {
    auto hp = SplitHostPort(address).value();
    asio::ip::tcp::resolver r(io_);
    asio::connect(socket_, r.resolve(hp.first, hp.second));
    timeval tv{.tv_sec = 3, .tv_usec = 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void Write(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  // Reads until `n` frames arrived or the peer closed or 3 s passed.
  std::vector<wire::Frame> ReadFrames(size_t n, bool* peer_closed) {
    std::vector<wire::Frame> frames;
    uint8_t buf[4096];
    while (frames.size() < n) {
      std::error_code ec;
      size_t got = socket_.read_some(asio::buffer(buf), ec);
      if (ec) {
        *peer_closed = ec == asio::error::eof || ec == asio::error::connection_reset;
        break;
      }
      EXPECT_TRUE(decoder_.Feed({buf, got}, &frames).ok());
    }
    return frames;
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  wire::FrameDecoder decoder_;
};

TEST_F(ConnectionTest, AnswersHelloAndPingWithHelloAndPong) {
  Listen({});
  RawPeer raw(listener_->local_address());
  raw.Write(wire::EncodeFrame(FrameType::kHello, 0, 0, R"({"name":"raw","version":1})") +
            wire::EncodeFrame(FrameType::kPing, 0, 0, ""));
  bool closed = false;
  auto frames = raw.ReadFrames(2, &closed);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].header.type, FrameType::kHello);
  EXPECT_EQ(wire::DecodeHello(frames[0].payload)->name, "server");
  EXPECT_EQ(frames[1].header.type, FrameType::kPong);
}

TEST_F(ConnectionTest, ClosesOnBadMagicWithALoggedReason) {
  Listen({});
  RawPeer raw(listener_->local_address());
  raw.Write("GARBAGE-GARBAGE-GARBAGE");
  bool closed = false;
  auto frames = raw.ReadFrames(5, &closed);
  EXPECT_TRUE(closed);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].header.type, FrameType::kGoaway);
  EXPECT_NE(frames[0].payload.find("magic"), std::string::npos) << frames[0].payload;
  std::optional<Status> s = server_->WaitClosed();
  ASSERT_TRUE(s.has_value());
  EXPECT_NE(s->message().find("magic"), std::string::npos) << s->ToString();
}

TEST_F(ConnectionTest, ClosesWhenTheFirstFrameIsNotHello) {
  Listen({});
  RawPeer raw(listener_->local_address());
  raw.Write(wire::EncodeFrame(FrameType::kPing, 0, 0, ""));
  std::optional<Status> s = server_->WaitClosed();
  ASSERT_TRUE(s.has_value());
  EXPECT_NE(s->message().find("expected HELLO"), std::string::npos) << s->ToString();
}

TEST_F(ConnectionTest, GivesUpOnAPeerThatNeverSaysHello) {
  Listen({.handshake_timeout = 200ms});
  RawPeer raw(listener_->local_address());
  std::optional<Status> s = server_->WaitClosed();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code(), StatusCode::kDeadlineExceeded);
}

TEST_F(ConnectionTest, RefusesToQueueBeyondItsMessageAndHeaderBounds) {
  Listen({.max_queued_messages = 2, .max_queued_header_bytes = 200});
  RawPeer raw(listener_->local_address());  // never says HELLO, so nothing is sent
  auto c = server_->Conn();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->Send({{"kind", "fire"}}, nullptr).ok());
  EXPECT_EQ(c->Send({{"kind", "fire"}, {"pad", std::string(300, 'x')}}, nullptr).code(),
            StatusCode::kResourceExhausted);
  EXPECT_TRUE(c->Send({{"kind", "fire"}}, nullptr).ok());
  Status full = c->Send({{"kind", "fire"}}, nullptr);
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("full"), std::string::npos) << full.ToString();
}

TEST(DialTcp, FailsPromptlyWhenNothingListens) {
  IoPool pool(1);
  std::promise<Status> result;
  // Port 1 on loopback: nothing listens there in a test sandbox.
  DialTcp(pool.Next(), "127.0.0.1:1", 2s, [&result](Result<std::unique_ptr<Transport>> t) {
    result.set_value(t.status());
  });
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(3s), std::future_status::ready);
  Status s = f.get();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  pool.Stop();
}

}  // namespace
}  // namespace ember::net
