// FaultTransport: a pair of in-memory Transports joined back to back, with faults a test
// can inject at any moment (seastar's loopback_socket). Each direction holds at most
// `buffer_bytes` in flight, like a pair of socket buffers, so a side that stops reading
// makes the other side's writes stall, exactly as over TCP.
//
//   FaultPair p = MakeFaultPair(io_a.get_executor(), io_b.get_executor());
//   auto a = Connection::Create(std::move(p.a), ConnectionRole::kConnector, ...);
//   auto b = Connection::Create(std::move(p.b), ConnectionRole::kAcceptor, ...);
//   p.link->PauseReading(FaultLink::kB, true);   // b stops reading: a's writes stall
//   p.link->Reset();                               // both ends see connection_reset
//
// Thread-safety: FaultLink's methods may be called from any thread. Each FaultTransport
// follows the Transport rules (its own executor); handlers always run there, never
// inside a FaultLink call.
#pragma once

#include <asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/transport.h"

namespace ember::net {

class FaultLink : public std::enable_shared_from_this<FaultLink> {
 public:
  enum Side { kA = 0, kB = 1 };

  FaultLink(asio::any_io_executor a, asio::any_io_executor b, size_t buffer_bytes);

  // `side` stops (or resumes) taking bytes out of its incoming buffer.
  void PauseReading(Side side, bool paused);
  // Bytes written by `side` are accepted and silently discarded.
  void DropWrites(Side side, bool drop);
  // Bytes written by `side` become readable `delay` after they were written.
  void SetDelay(Side side, std::chrono::milliseconds delay);
  // Both ends: pending and later operations fail with connection_reset.
  void Reset();
  // Bytes `side` has written so far (accepted into the pipe or dropped).
  uint64_t bytes_written(Side side) const;

  // Used by FaultTransport (side `s`).
  void Read(Side s, std::span<uint8_t> buffer, Transport::IoHandler handler);
  void Write(Side s, std::span<const uint8_t> buffer, bool all, Transport::IoHandler handler);
  void Close(Side s);

 private:
  using Clock = std::chrono::steady_clock;
  struct Chunk {
    std::vector<uint8_t> bytes;
    size_t pos = 0;
    Clock::time_point ready_at;
  };
  struct PendingRead {
    std::span<uint8_t> buffer;
    Transport::IoHandler handler;
  };
  struct PendingWrite {
    std::span<const uint8_t> buffer;
    size_t done = 0;
    bool all = true;
    Transport::IoHandler handler;
  };
  // Bytes travelling from writer side `from` to the other side.
  struct Direction {
    std::deque<Chunk> chunks;
    size_t buffered = 0;
    std::unique_ptr<PendingWrite> writer;
    bool drop = false;
    std::chrono::milliseconds delay{0};
    uint64_t written = 0;
  };
  struct End {
    asio::any_io_executor executor;
    std::unique_ptr<PendingRead> reader;
    bool paused = false;
    bool closed = false;
  };
  using Completion = std::pair<asio::any_io_executor, std::function<void()>>;

  // Moves bytes and completes what can complete; returns the handlers to post.
  void Pump(std::vector<Completion>* out);
  void PumpWriter(Side from, std::vector<Completion>* out);
  void PumpReader(Side to, std::vector<Completion>* out);
  void FailAll(Side s, std::error_code ec, std::vector<Completion>* out);
  void ScheduleWake(Side to, Clock::time_point at);
  static void PostAll(std::vector<Completion>& completions);
  static Side Other(Side s) { return s == kA ? kB : kA; }

  const size_t buffer_bytes_;
  mutable std::mutex mu_;
  Direction dir_[2];  // guarded by mu_; dir_[s] carries bytes written by side s
  End end_[2];        // guarded by mu_
  bool reset_ = false;  // guarded by mu_
};

class FaultTransport final : public Transport {
 public:
  FaultTransport(std::shared_ptr<FaultLink> link, FaultLink::Side side, asio::any_io_executor executor);
  ~FaultTransport() override;
  asio::any_io_executor executor() override { return executor_; }
  void AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) override;
  void AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) override;
  void AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) override;
  void Close() override;
  const std::string& remote_address() const override { return remote_; }

 private:
  std::shared_ptr<FaultLink> link_;
  FaultLink::Side side_;
  asio::any_io_executor executor_;
  std::string remote_;
};

struct FaultPair {
  std::unique_ptr<Transport> a;
  std::unique_ptr<Transport> b;
  std::shared_ptr<FaultLink> link;
};

// Two transports, `a` on executor `ea` and `b` on `eb`, joined by a FaultLink.
FaultPair MakeFaultPair(asio::any_io_executor ea, asio::any_io_executor eb,
                        size_t buffer_bytes = 256 << 10);

}  // namespace ember::net
