// Relays (relay_sink.h): a cell forwards bodies passing through as they arrive, under
// flow control, with memory bounded by about one window per relayed stream. Real cells on
// loopback: leaf "site-1.job" -> middle "site-1" -> root "server". Every wait has a deadline.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include "cell/relay_sink.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

#include "base/memory.h"
#include "cell/cell.h"
#include "net/test_support.h"

namespace ember::cell {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using net::testing::CheckPattern;
using net::testing::PatternBody;
using net::testing::Watchdog;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kWindow = 16 * kMiB;  // pinned: the bounds below are in windows
constexpr uint64_t kSmallWindow = 4 * kMiB;

std::shared_ptr<Cell> MustStart(CellOptions o) {
  auto c = Cell::Start(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : nullptr;
}

std::shared_ptr<const base::Config> WindowConfig(uint64_t window) {
  base::Config c;
  EXPECT_TRUE(c.Set("streaming_window_size", std::to_string(window), "test").ok());
  return std::make_shared<const base::Config>(std::move(c));
}

// server <- site-1 <- site-1.job, all in this process, with the same transport config.
struct Chain {
  std::shared_ptr<Cell> server, site, job;
  explicit Chain(std::shared_ptr<const base::Config> config = WindowConfig(kWindow)) {
    server = MustStart({.name = "server", .listen = "127.0.0.1:0", .config = config});
    site = MustStart({.name = "site-1", .listen = "127.0.0.1:0", .parent = server->listen_address(),
                      .connect_timeout = 3000ms, .config = config});
    job = MustStart({.name = "site-1.job", .parent = site->listen_address(), .connect_timeout = 3000ms,
                     .config = config});
  }
};

// What a PatternConsumer saw; read from any thread.
struct Tally {
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> bad_chunks{0};
  std::atomic<bool> finished{false};
  std::atomic<bool> cancelled{false};
};

// Checks each chunk against the pattern (so the body arrives byte-exact, in order) and
// keeps nothing; `bytes_per_second` > 0 makes it a slow consumer.
class PatternConsumer final : public BodyConsumer {
 public:
  PatternConsumer(Tally* t, uint64_t bytes_per_second) : t_(t), rate_(bytes_per_second) {}
  Status Write(std::span<const uint8_t> chunk) override {
    if (rate_ > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(chunk.size() * 1000000000ull / rate_));
    if (!CheckPattern(offset_, chunk)) t_->bad_chunks.fetch_add(1);
    offset_ += chunk.size();
    t_->bytes.fetch_add(chunk.size());
    return Status::Ok();
  }
  Status Finish() override {
    t_->finished = true;
    return Status::Ok();
  }
  void Cancel(const Status&) override { t_->cancelled = true; }

 private:
  Tally* t_;
  uint64_t rate_;
  uint64_t offset_ = 0;
};

void HandleUpload(Cell& cell, Tally* tally, uint64_t bytes_per_second = 0) {
  cell.HandleStream(
      "upload",
      [=](const Message&) -> Result<std::unique_ptr<BodyConsumer>> {
        return std::unique_ptr<BodyConsumer>(new PatternConsumer(tally, bytes_per_second));
      },
      [tally](Message, Responder r) { r.Reply({{"bytes", tally->bytes.load()}}); });
}

// A pattern body that records how far its sender has read it, and fails every read from
// `fail_at` on (a sender whose source breaks mid-stream).
class TrackedBody final : public BodySource {
 public:
  explicit TrackedBody(uint64_t size, uint64_t fail_at = UINT64_MAX) : pattern_(size), fail_at_(fail_at) {}
  uint64_t size() const override { return pattern_.size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset + out.size() > fail_at_) return Status::DataLoss("the model file went away");
    auto n = pattern_.ReadAt(offset, out);
    if (n.ok()) read_up_to.store(std::max(read_up_to.load(), offset + *n));
    return n;
  }
  mutable std::atomic<uint64_t> read_up_to{0};

 private:
  PatternBody pattern_;
  uint64_t fail_at_;
};

// Samples this process's RSS every 2 ms from construction until Stop().
class RssSampler {
 public:
  RssSampler() : baseline_(base::CurrentRssBytes()), peak_(baseline_) {
    thread_ = std::thread([this] {
      while (!stop_) {
        peak_ = std::max<int64_t>(peak_, base::CurrentRssBytes());
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  ~RssSampler() { Stop(); }
  // Peak growth over the baseline, in bytes.
  int64_t Stop() {
    if (thread_.joinable()) {
      stop_ = true;
      thread_.join();
    }
    return peak_ - baseline_;
  }

 private:
  int64_t baseline_;
  std::atomic<int64_t> peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(Relay, ForwardsALargeRequestBodyAsItArrivesWithoutBufferingIt) {
  Watchdog dog(240s, "relayed 256 MiB request");
  Chain chain;
  Tally tally;
  HandleUpload(*chain.server, &tally);
  const uint64_t size = 256 * kMiB;
  ResetRelayPeak();
  RssSampler rss;
  auto reply = chain.job->Request("server", Message::Make("upload", {}, std::make_shared<PatternBody>(size)), 120s);
  int64_t growth = rss.Stop();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["bytes"].get<uint64_t>(), size);
  EXPECT_EQ(tally.bytes.load(), size);
  EXPECT_EQ(tally.bad_chunks.load(), 0u);
  EXPECT_TRUE(tally.finished);
  // The whole chain (sender, relay, consumer) lives in this process: none of them held
  // the body. The relay itself held at most one window plus one block.
  std::printf("relayed request of %llu MiB: process RSS grew %.1f MiB, relay held at most %.1f MiB\n",
              static_cast<unsigned long long>(size / kMiB), growth / 1048576.0,
              RelayMemoryNow().peak_held_bytes / 1048576.0);
  EXPECT_LT(growth, 48 << 20);
  EXPECT_LE(RelayMemoryNow().peak_held_bytes, kWindow + kMiB);
  EXPECT_TRUE(WaitFor([] { return RelayMemoryNow().held_bytes == 0; }, 5s));
}

// ---- a 256 MiB reply relayed the other way, the middle cell in its own process ----------

// Reads one line from `fd` within `limit`; empty on timeout or EOF.
std::string ReadLine(int fd, std::chrono::milliseconds limit) {
  std::string line;
  auto deadline = Clock::now() + limit;
  char c;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
    if (::read(fd, &c, 1) != 1) return "";
    if (c == '\n') return line;
    line += c;
  }
}

void WriteLine(int fd, const std::string& line) {
  std::string s = line + "\n";
  [[maybe_unused]] ssize_t n = ::write(fd, s.data(), s.size());
}

// The child process: the root "server" (answers "download" with a pattern body of the
// requested size) and the middle cell "site-1". Prints site-1's address, waits for a line
// on `in`, then prints its RSS growth (peak over the baseline) and the relay's peak.
int RunServerAndMiddle(int in, int out) {
  auto server = Cell::Start({.name = "server", .listen = "127.0.0.1:0", .config = WindowConfig(kWindow)});
  if (!server.ok()) return 2;
  (*server)->Handle("download", [](Message m, Responder r) {
    r.Reply({}, std::make_shared<PatternBody>(m.h().value("size", uint64_t{0})));
  });
  auto site = Cell::Start({.name = "site-1", .listen = "127.0.0.1:0", .parent = (*server)->listen_address(),
                           .connect_timeout = 3000ms, .config = WindowConfig(kWindow)});
  if (!site.ok()) return 3;
  RssSampler rss;
  WriteLine(out, (*site)->listen_address());
  ReadLine(in, 200s);
  int64_t growth = rss.Stop();
  WriteLine(out, std::to_string(growth) + " " + std::to_string(RelayMemoryNow().peak_held_bytes));
  (*site)->Stop();
  (*server)->Stop();
  return 0;
}

TEST(Relay, ForwardsALargeReplyAsItArrivesWithoutBufferingIt) {
  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(from_child), 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();  // before this test starts any thread: the child starts its own
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(RunServerAndMiddle(to_child[0], from_child[1]));
  Watchdog dog(240s, "relayed 256 MiB reply");
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{pid};

  std::string site_address = ReadLine(from_child[0], 20s);
  ASSERT_FALSE(site_address.empty()) << "the server/middle process did not start";
  auto job = MustStart({.name = "site-1.job", .parent = site_address, .connect_timeout = 3000ms,
                        .config = WindowConfig(kWindow)});
  ASSERT_TRUE(job);
  const uint64_t size = 256 * kMiB;
  auto reply = job->Request("server", Message::Make("download", {{"size", size}}), 120s);
  WriteLine(to_child[1], "done");
  std::string figures = ReadLine(from_child[0], 20s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_TRUE(reply->body);
  ASSERT_EQ(reply->body->size(), size);
  ASSERT_NE(reply->body->contiguous(), nullptr);
  EXPECT_TRUE(CheckPattern(0, {reply->body->contiguous(), size}));

  long long growth = -1, relay_peak = -1;
  ASSERT_EQ(std::sscanf(figures.c_str(), "%lld %lld", &growth, &relay_peak), 2) << figures;
  std::printf("relayed reply of %llu MiB: server+middle process RSS grew %.1f MiB, relay held at most %.1f MiB\n",
              static_cast<unsigned long long>(size / kMiB), growth / 1048576.0, relay_peak / 1048576.0);
  EXPECT_LT(growth, 48 << 20);
  EXPECT_LE(static_cast<uint64_t>(relay_peak), kWindow + kMiB);
  EXPECT_GT(relay_peak, 0);  // it was relayed, not forwarded whole
}

// ---- flow control and failures ------------------------------------------------------

TEST(Relay, ASlowDestinationHoldsTheOriginalSenderBackWithoutBlockingOthers) {
  Watchdog dog(120s, "slow relayed upload");
  Chain chain(WindowConfig(kSmallWindow));
  Tally tally;
  HandleUpload(*chain.server, &tally, 16 * kMiB);  // ~16 MiB/s
  chain.server->Handle("ping", [](Message, Responder r) { r.Reply(); });
  const uint64_t size = 48 * kMiB;
  auto body = std::make_shared<TrackedBody>(size);
  ResetRelayPeak();
  std::atomic<bool> uploaded{false};
  std::thread upload([&] {
    auto r = chain.job->Request("server", Message::Make("upload", {}, body), 60s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    uploaded = true;
  });
  // Meanwhile small requests through the same relay complete, and the sender is never
  // more than the two windows (its own to the relay, the relay's to the server) ahead of
  // what the slow consumer processed.
  uint64_t max_ahead = 0;
  int pings = 0;
  while (!uploaded) {
    uint64_t consumed = tally.bytes.load();
    uint64_t sent = body->read_up_to.load();
    max_ahead = std::max(max_ahead, sent - std::min(sent, consumed));
    if (pings < 10) {
      auto t0 = Clock::now();
      auto r = chain.job->Request("server", Message::Make("ping"), 5s);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_LT(Clock::now() - t0, 1s);
      ++pings;
    }
    std::this_thread::sleep_for(20ms);
  }
  upload.join();
  EXPECT_EQ(pings, 10);
  EXPECT_EQ(tally.bytes.load(), size);
  EXPECT_EQ(tally.bad_chunks.load(), 0u);
  uint64_t relay_peak = RelayMemoryNow().peak_held_bytes;
  std::printf("slow destination: sender at most %.1f MiB ahead of the consumer, relay held at most %.1f MiB "
              "(window %llu MiB)\n",
              max_ahead / 1048576.0, relay_peak / 1048576.0, static_cast<unsigned long long>(kSmallWindow / kMiB));
  EXPECT_LE(max_ahead, 2 * kSmallWindow + 2 * kMiB);
  EXPECT_LE(relay_peak, kSmallWindow + kMiB);
  EXPECT_GE(relay_peak, kSmallWindow / 2);  // the relay did fill up: the sender was held there
}

TEST(Relay, ASenderAbortingMidStreamCancelsTheDestinationAndAnswersTheRequester) {
  Watchdog dog(60s, "aborted relayed upload");
  Chain chain;
  Tally tally;
  HandleUpload(*chain.server, &tally);
  auto body = std::make_shared<TrackedBody>(64 * kMiB, /*fail_at=*/8 * kMiB);
  auto t0 = Clock::now();
  auto r = chain.job->Request("server", Message::Make("upload", {}, body), 30s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(Clock::now() - t0, 10s);
  EXPECT_NE(r.status().message().find("the model file went away"), std::string::npos) << r.status().ToString();
  EXPECT_TRUE(WaitFor([&] { return tally.cancelled.load(); }, 5s));
  EXPECT_FALSE(tally.finished);
  EXPECT_LE(tally.bytes.load(), 8 * kMiB);
  EXPECT_TRUE(WaitFor([] { return RelayMemoryNow().held_bytes == 0; }, 5s));
  // The relay and its connections still work.
  chain.server->Handle("ping", [](Message, Responder r) { r.Reply(); });
  EXPECT_TRUE(chain.job->Request("server", Message::Make("ping"), 5s).ok());
}

TEST(Relay, TheDestinationGoingAwayMidStreamAnswersTheRequesterPromptly) {
  Watchdog dog(60s, "relayed upload to a vanishing destination");
  Chain chain;
  Tally tally;
  HandleUpload(*chain.server, &tally, 32 * kMiB);  // slow, so the stream is still going
  std::atomic<bool> done{false};
  Result<Message> r = Status::Internal("no reply");
  Clock::time_point replied;
  std::thread upload([&] {
    r = chain.job->Request("server", Message::Make("upload", {}, std::make_shared<PatternBody>(256 * kMiB)), 60s);
    replied = Clock::now();
    done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return tally.bytes.load() >= 4 * kMiB; }, 20s));
  auto stopped = Clock::now();
  chain.server->Stop();
  upload.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("site-1: forwarding to server"), std::string::npos) << r.status().ToString();
  EXPECT_LT(replied - stopped, 5s);
  EXPECT_TRUE(WaitFor([] { return RelayMemoryNow().held_bytes == 0; }, 5s));
}

TEST(Relay, ALargeBodyWithNoRouteIsRefusedAtItsHead) {
  Chain chain;
  ResetRelayPeak();
  auto t0 = Clock::now();
  auto r = chain.job->Request("site-1.nobody",
                              Message::Make("upload", {}, std::make_shared<PatternBody>(64 * kMiB)), 30s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("no route to 'site-1.nobody'"), std::string::npos) << r.status().ToString();
  EXPECT_LT(Clock::now() - t0, 10s);
  EXPECT_EQ(RelayMemoryNow().peak_held_bytes, 0u);  // nothing was relayed or held
}

}  // namespace
}  // namespace ember::cell
