// Cell::HandleStream: requests whose bodies are consumed chunk by chunk as they arrive.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/memory.h"
#include "cell/cell.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace ember::cell {
namespace {

using namespace std::chrono_literals;

// A body of `size` bytes generated on the fly (byte i = i * 7 mod 251): nothing stored.
class PatternBody final : public BodySource {
 public:
  explicit PatternBody(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    size_t n = std::min<uint64_t>(out.size(), size_ - offset);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((offset + i) * 7 % 251);
    return n;
  }

 private:
  uint64_t size_;
};

struct Tally {
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> checksum{0};
  std::atomic<bool> finished{false};
  std::atomic<bool> cancelled{false};
};

class TallyConsumer final : public BodyConsumer {
 public:
  TallyConsumer(Tally* t, uint64_t fail_after, std::chrono::microseconds delay)
      : t_(t), fail_after_(fail_after), delay_(delay) {}
  Status Write(std::span<const uint8_t> chunk) override {
    if (delay_.count()) std::this_thread::sleep_for(delay_);
    for (uint8_t b : chunk) t_->checksum += b;
    t_->bytes += chunk.size();
    if (t_->bytes > fail_after_) return Status::InvalidArgument("consumer refused byte " + std::to_string(fail_after_));
    return Status::Ok();
  }
  Status Finish() override {
    t_->finished = true;
    return Status::Ok();
  }
  void Cancel(const Status&) override { t_->cancelled = true; }

 private:
  Tally* t_;
  uint64_t fail_after_;
  std::chrono::microseconds delay_;
};

uint64_t PatternChecksum(uint64_t size) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < size; ++i) sum += (i * 7 % 251);
  return sum;
}

std::shared_ptr<Cell> Start(CellOptions o) {
  auto c = Cell::Start(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : nullptr;
}

void Register(Cell& cell, Tally* tally, uint64_t fail_after, std::chrono::microseconds delay = 0us) {
  cell.HandleStream(
      "upload",
      [=](const Message& head) -> Result<std::unique_ptr<BodyConsumer>> {
        if (head.h().value("refuse", false)) return Status::InvalidArgument("refused at HEAD");
        return std::unique_ptr<BodyConsumer>(new TallyConsumer(tally, fail_after, delay));
      },
      [tally](Message m, Responder r) { r.Reply({{"bytes", tally->bytes.load()}}); });
}

TEST(StreamHandler, ConsumesALargeBodyChunkByChunkThenCompletes) {
  auto server = Start({.name = "server", .listen = "127.0.0.1:0"});
  Tally tally;
  Register(*server, &tally, UINT64_MAX);
  auto site = Start({.name = "site-1", .parent = server->listen_address()});
  const uint64_t size = 64ull << 20;
  const int64_t rss_before = base::CurrentRssBytes();
  auto reply = site->Request("server", Message::Make("upload", {}, std::make_shared<PatternBody>(size)), 30s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["bytes"].get<uint64_t>(), size);
  EXPECT_EQ(tally.checksum.load(), PatternChecksum(size));
  EXPECT_TRUE(tally.finished);
  // Neither side buffered the body: growth stays far below its 64 MiB.
  EXPECT_LT(base::CurrentRssBytes() - rss_before, 48 << 20);
}

TEST(StreamHandler, AConsumerErrorAnswersTheRequesterAndCancels) {
  auto server = Start({.name = "server", .listen = "127.0.0.1:0"});
  Tally tally;
  Register(*server, &tally, 3 << 20);
  auto site = Start({.name = "site-1", .parent = server->listen_address()});
  auto reply = site->Request("server", Message::Make("upload", {}, std::make_shared<PatternBody>(16 << 20)), 30s);
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("consumer refused"), std::string::npos) << reply.status().ToString();
  EXPECT_TRUE(tally.cancelled);
  EXPECT_FALSE(tally.finished);
  // The connection still works afterwards.
  Tally again;
  auto ok = site->Request("server", Message::Make("upload", {{"refuse", true}}), 10s);
  EXPECT_FALSE(ok.ok());
  EXPECT_NE(ok.status().message().find("refused at HEAD"), std::string::npos) << ok.status().ToString();
}

TEST(StreamHandler, ASlowConsumerHoldsTheSenderBackWithoutBlockingOthers) {
  auto server = Start({.name = "server", .listen = "127.0.0.1:0"});
  server->Handle("ping", [](Message, Responder r) { r.Reply(); });
  Tally tally;
  Register(*server, &tally, UINT64_MAX, 2000us);  // ~2 ms per chunk
  auto site = Start({.name = "site-1", .parent = server->listen_address()});
  std::thread upload([&] {
    auto r = site->Request("server", Message::Make("upload", {}, std::make_shared<PatternBody>(48 << 20)), 60s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  });
  std::this_thread::sleep_for(20ms);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(site->Request("server", Message::Make("ping"), 5s).ok());
  upload.join();
  EXPECT_EQ(tally.bytes.load(), 48ull << 20);
}

}  // namespace
}  // namespace ember::cell
