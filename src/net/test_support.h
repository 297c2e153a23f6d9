// Helpers for the net tests and the transport benchmark (header only, not part of the
// library API): a callback collector for one Connection, a watchdog, and a synthetic
// body whose bytes are a function of their offset, with a sink that checks them while
// keeping nothing, so multi-gigabyte transfers need no memory.
//
//   auto ev = std::make_shared<ConnectionEvents>();
//   auto c = Connection::Create(std::move(t), role, opts, ev->Callbacks(ev));
//   ASSERT_TRUE(ev->WaitReady());
//   c->Send(head, PatternBody(2ull << 30));          // 2 GiB, generated on the fly
//   Watchdog dog(120s, "head-of-line test");           // aborts the process if stuck
//
// Thread-safety: ConnectionEvents and PatternCheckSink counters may be read from any
// thread; PatternBody is immutable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/connection.h"
#include "net/stream_sink.h"
#include "wire/body.h"
#include "wire/frame.h"

namespace ember::net::testing {

using namespace std::chrono_literals;

// Collects one connection's callbacks; every wait has a deadline.
struct ConnectionEvents {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::optional<Status> closed;
  std::deque<IncomingMessage> messages;
  Connection::Ptr conn;
  // Optional hook run on the io thread for each message before it is queued; return
  // true to consume it (it is then not queued).
  std::function<bool(const Connection::Ptr&, IncomingMessage&)> intercept;

  Connection::Callbacks Callbacks(const std::shared_ptr<ConnectionEvents>& self) {
    std::weak_ptr<ConnectionEvents> weak = self;
    return {
        .on_ready = [weak](const Connection::Ptr& c) {
          Update(weak, [&c](ConnectionEvents& e) {
            e.ready = true;
            if (!e.conn) e.conn = c;
          });
        },
        .on_message = [weak](const Connection::Ptr& c, IncomingMessage m) {
          auto e = weak.lock();
          if (!e) return;
          if (e->intercept && e->intercept(c, m)) return;
          Update(weak, [&m](ConnectionEvents& ev) { ev.messages.push_back(std::move(m)); });
        },
        .on_closed = [weak](const Connection::Ptr&, const Status& s) {
          Update(weak, [&s](ConnectionEvents& e) { e.closed = s; });
        },
    };
  }
  template <typename F>
  static void Update(const std::weak_ptr<ConnectionEvents>& weak, F f) {
    if (auto e = weak.lock()) {
      std::lock_guard lock(e->mu);
      f(*e);
      e->cv.notify_all();
    }
  }
  bool WaitReady(std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return ready; });
  }
  std::optional<IncomingMessage> WaitMessage(std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, limit, [&] { return !messages.empty(); })) return std::nullopt;
    IncomingMessage m = std::move(messages.front());
    messages.pop_front();
    return m;
  }
  std::optional<Status> WaitClosed(std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, limit, [&] { return closed.has_value(); });
    return closed;
  }
  bool IsClosed() {
    std::lock_guard lock(mu);
    return closed.has_value();
  }
  Connection::Ptr Conn(std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, limit, [&] { return conn != nullptr; });
    return conn;
  }
};

// Aborts the process, naming `what`, unless destroyed within `limit`: a hung transfer
// fails the test run with a message instead of stalling it.
class Watchdog {
 public:
  Watchdog(std::chrono::milliseconds limit, std::string what)
      : thread_([this, limit, what = std::move(what)] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: %s did not finish within %lld ms\n", what.c_str(),
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Byte `o` of a pattern body: byte (o % 8) of the word PatternWord(o / 8).
// "H1 D1:2 A1": each frame's type initial, stream id and (DATA) payload length.
inline std::string Trace(const std::vector<wire::Frame>& frames) {
  std::string out;
  for (const wire::Frame& f : frames) {
    if (!out.empty()) out += ' ';
    out += wire::FrameTypeName(f.header.type).substr(0, 1);
    out += std::to_string(f.header.stream_id);
    if (f.header.type == wire::FrameType::kData) out += ":" + std::to_string(f.header.length);
  }
  return out;
}

inline uint64_t PatternWord(uint64_t k) { return (k + 1) * 0x9E3779B97F4A7C15ull; }
inline uint8_t PatternByte(uint64_t o) { return static_cast<uint8_t>(PatternWord(o >> 3) >> (8 * (o & 7))); }

inline void FillPattern(uint64_t offset, std::span<uint8_t> out) {
  size_t i = 0;
  for (; i < out.size() && ((offset + i) & 7) != 0; ++i) out[i] = PatternByte(offset + i);
  for (; i + 8 <= out.size(); i += 8) {
    uint64_t w = PatternWord((offset + i) >> 3);
    std::memcpy(out.data() + i, &w, 8);  // little-endian host: byte j of w at offset +j
  }
  for (; i < out.size(); ++i) out[i] = PatternByte(offset + i);
}

inline bool CheckPattern(uint64_t offset, std::span<const uint8_t> in) {
  size_t i = 0;
  bool ok = true;
  for (; i < in.size() && ((offset + i) & 7) != 0; ++i) ok &= in[i] == PatternByte(offset + i);
  for (; i + 8 <= in.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, in.data() + i, 8);
    ok &= w == PatternWord((offset + i) >> 3);
  }
  for (; i < in.size(); ++i) ok &= in[i] == PatternByte(offset + i);
  return ok;
}

// A body of `size` pattern bytes generated on each ReadAt; holds no memory.
class PatternBody final : public wire::BodySource {
 public:
  explicit PatternBody(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - std::min(offset, size_)));
    FillPattern(offset, out.first(n));
    return n;
  }

 private:
  uint64_t size_;
};

// Checks each chunk against the pattern and drops it (kOnWrite: credit returns as soon
// as Write returns). Counts bytes and mismatching chunks in shared counters.
struct PatternTally {
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> bad_chunks{0};
  std::atomic<int> finished{0};
};

class PatternCheckSink final : public StreamSink {
 public:
  explicit PatternCheckSink(std::shared_ptr<PatternTally> tally) : tally_(std::move(tally)) {}
  Status Write(std::span<const uint8_t> chunk) override {
    if (!CheckPattern(offset_, chunk)) tally_->bad_chunks.fetch_add(1);
    offset_ += chunk.size();
    tally_->bytes.fetch_add(chunk.size(), std::memory_order_relaxed);
    return Status::Ok();
  }
  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    tally_->finished.fetch_add(1);
    return std::shared_ptr<wire::BodySource>();
  }

 private:
  std::shared_ptr<PatternTally> tally_;
  uint64_t offset_ = 0;
};

}  // namespace ember::net::testing
