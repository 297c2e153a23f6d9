#include "cell/relay_sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>

#include "cell/consumer_sink.h"

namespace ember::cell {
namespace {

// Blocks are allocated as bytes arrive and freed as soon as they are forwarded: nothing
// window-sized is reserved up front, so an idle or slow relayed stream costs only what
// it holds.
constexpr size_t kBlockBytes = 256 << 10;

std::atomic<uint64_t> g_held_bytes{0};
std::atomic<uint64_t> g_peak_held_bytes{0};

void Hold(uint64_t bytes) {
  uint64_t now = g_held_bytes.fetch_add(bytes) + bytes;
  uint64_t peak = g_peak_held_bytes.load();
  while (now > peak && !g_peak_held_bytes.compare_exchange_weak(peak, now)) {
  }
}

void Unhold(uint64_t bytes) { g_held_bytes.fetch_sub(bytes); }

struct Block {
  std::unique_ptr<uint8_t[]> data;
  size_t capacity = 0;
  size_t filled = 0;
};

// The bytes between the two connections, and how each side failed.
class Pipe {
 public:
  Pipe(uint64_t size, std::function<void(const Status&)> on_downstream_failed)
      : size_(size), on_downstream_failed_(std::move(on_downstream_failed)) {}
  ~Pipe() { FreeLocked(); }

  uint64_t size() const { return size_; }

  // The incoming side.
  void BindCredit(net::StreamCredit credit) {
    std::lock_guard lock(mu_);
    credit_ = std::move(credit);
  }

  Status Write(std::span<const uint8_t> bytes) {
    std::function<void()> wake;
    net::StreamCredit discard;
    {
      std::lock_guard lock(mu_);
      if (bytes.size() > size_ - received_) {
        return Status::OutOfRange(fmt::format("relayed body overflows its {} bytes", size_));
      }
      if (FailedLocked()) {
        discard = credit_;  // nobody will forward these: keep the sender moving
      } else {
        AppendLocked(bytes);
        wake = TakeWakeLocked();
      }
    }
    discard.Consumed(bytes.size());
    if (wake) wake();
    return Status::Ok();
  }

  void FailUpstream(const Status& why) {
    std::function<void()> wake;
    {
      std::lock_guard lock(mu_);
      if (!upstream_error_.ok()) return;
      upstream_error_ = Status::Aborted(fmt::format("relay: the incoming stream broke: {}", why.message()));
      FreeLocked();
      wake = TakeWakeLocked();
    }
    if (wake) wake();
  }

  // The outgoing side.
  Result<size_t> Read(uint64_t offset, std::span<uint8_t> out) {
    size_t n = 0;
    net::StreamCredit credit;
    {
      std::lock_guard lock(mu_);
      if (!upstream_error_.ok()) return upstream_error_;
      if (downstream_failed_) return Status::Aborted("relay: the outgoing stream failed");
      if (offset != forwarded_) {
        return Status::FailedPrecondition(
            fmt::format("relayed body read at {}, expected {}: it is read once, in order", offset, forwarded_));
      }
      n = static_cast<size_t>(std::min<uint64_t>(out.size(), received_ - forwarded_));
      CopyOutLocked(out.first(n));
      forwarded_ += n;
      credit = credit_;
    }
    credit.Consumed(n);  // only now may the upstream sender replace these bytes
    return n;
  }

  uint64_t available() const {
    std::lock_guard lock(mu_);
    return FailedLocked() ? size_ : received_;
  }

  void NotifyAvailable(uint64_t offset, std::function<void()> wake) {
    {
      std::lock_guard lock(mu_);
      if (!FailedLocked() && received_ <= offset) {
        wake_ = std::move(wake);
        wake_after_ = offset;
        return;
      }
    }
    if (wake) wake();
  }

  // Any thread: the outgoing Send failed (aborted, connection closed, starved of credit).
  void FailDownstream(const Status& why) {
    bool report = false;
    uint64_t unforwarded = 0;
    net::StreamCredit credit;
    {
      std::lock_guard lock(mu_);
      if (downstream_failed_) return;
      downstream_failed_ = true;
      report = upstream_error_.ok();  // else the failure came from upstream: nothing to tell
      unforwarded = received_ - forwarded_;
      FreeLocked();
      wake_ = nullptr;
      credit = credit_;
    }
    credit.Consumed(unforwarded);
    if (report && on_downstream_failed_) on_downstream_failed_(why);
  }

 private:
  bool FailedLocked() const { return !upstream_error_.ok() || downstream_failed_; }

  void AppendLocked(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      if (blocks_.empty() || blocks_.back().filled == blocks_.back().capacity) {
        size_t capacity = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, size_ - received_));
        blocks_.push_back({std::unique_ptr<uint8_t[]>(new uint8_t[capacity]), capacity, 0});
        held_ += capacity;
        Hold(capacity);
      }
      Block& b = blocks_.back();
      size_t n = std::min(b.capacity - b.filled, bytes.size() - done);
      std::memcpy(b.data.get() + b.filled, bytes.data() + done, n);
      b.filled += n;
      done += n;
      received_ += n;
    }
  }

  // REQUIRES: out.size() <= received_ - forwarded_.
  void CopyOutLocked(std::span<uint8_t> out) {
    size_t done = 0;
    while (done < out.size()) {
      Block& b = blocks_.front();
      size_t n = std::min(b.filled - front_read_, out.size() - done);
      std::memcpy(out.data() + done, b.data.get() + front_read_, n);
      done += n;
      front_read_ += n;
      if (front_read_ == b.capacity) {
        held_ -= b.capacity;
        Unhold(b.capacity);
        blocks_.pop_front();
        front_read_ = 0;
      }
    }
  }

  void FreeLocked() {
    Unhold(held_);
    held_ = 0;
    blocks_.clear();
    front_read_ = 0;
  }

  std::function<void()> TakeWakeLocked() {
    if (!wake_ || (!FailedLocked() && received_ <= wake_after_)) return nullptr;
    return std::exchange(wake_, nullptr);
  }

  const uint64_t size_;
  const std::function<void(const Status&)> on_downstream_failed_;

  mutable std::mutex mu_;
  // Guarded by mu_.
  net::StreamCredit credit_;  // bound before the first Write
  std::deque<Block> blocks_;
  size_t front_read_ = 0;     // bytes of blocks_.front() already forwarded
  uint64_t received_ = 0;
  uint64_t forwarded_ = 0;
  uint64_t held_ = 0;         // capacity of blocks_
  Status upstream_error_;
  bool downstream_failed_ = false;
  std::function<void()> wake_;  // the reader waits for received_ > wake_after_
  uint64_t wake_after_ = 0;
};

class RelayBody final : public wire::BodySource {
 public:
  explicit RelayBody(std::shared_ptr<Pipe> pipe) : pipe_(std::move(pipe)) {}
  uint64_t size() const override { return pipe_->size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override { return pipe_->Read(offset, out); }
  uint64_t available() const override { return pipe_->available(); }
  void NotifyAvailable(uint64_t offset, std::function<void()> wake) const override {
    pipe_->NotifyAvailable(offset, std::move(wake));
  }

 private:
  std::shared_ptr<Pipe> pipe_;
};

class RelaySink final : public net::StreamSink {
 public:
  explicit RelaySink(std::shared_ptr<Pipe> pipe) : pipe_(std::move(pipe)) {}
  Status Write(std::span<const uint8_t> chunk) override { return pipe_->Write(chunk); }
  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    return std::shared_ptr<wire::BodySource>(std::make_shared<ConsumedBody>());
  }
  void Cancel(const Status& why) override { pipe_->FailUpstream(why); }
  net::CreditPolicy credit_policy() const override { return net::CreditPolicy::kManual; }
  void BindCredit(net::StreamCredit credit) override { pipe_->BindCredit(std::move(credit)); }

 private:
  std::shared_ptr<Pipe> pipe_;
};

class DiscardingSink final : public net::StreamSink {
 public:
  Status Write(std::span<const uint8_t>) override { return Status::Ok(); }
  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    return std::shared_ptr<wire::BodySource>(std::make_shared<ConsumedBody>());
  }
};

}  // namespace

Relay MakeRelay(uint64_t body_size, std::function<void(const Status&)> on_downstream_failed) {
  auto pipe = std::make_shared<Pipe>(body_size, std::move(on_downstream_failed));
  Relay r;
  r.sink = std::make_unique<RelaySink>(pipe);
  r.body = std::make_shared<RelayBody>(pipe);
  r.on_sent = [pipe](const Status& s) {
    if (!s.ok()) pipe->FailDownstream(s);
  };
  return r;
}

std::unique_ptr<net::StreamSink> MakeDiscardingSink() { return std::make_unique<DiscardingSink>(); }

RelayMemory RelayMemoryNow() {
  return {.held_bytes = g_held_bytes.load(), .peak_held_bytes = g_peak_held_bytes.load()};
}

void ResetRelayPeak() { g_peak_held_bytes.store(g_held_bytes.load()); }

}  // namespace ember::cell
