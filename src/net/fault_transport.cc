#include "net/fault_transport.h"

#include <asio/error.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <cstring>

namespace ember::net {

FaultLink::FaultLink(asio::any_io_executor a, asio::any_io_executor b, size_t buffer_bytes)
    : buffer_bytes_(std::max<size_t>(buffer_bytes, 1)) {
  end_[kA].executor = std::move(a);
  end_[kB].executor = std::move(b);
}

void FaultLink::PostAll(std::vector<Completion>& completions) {
  for (auto& [executor, fn] : completions) asio::post(executor, std::move(fn));
  completions.clear();
}

void FaultLink::PauseReading(Side side, bool paused) {
  std::vector<Completion> out;
  {
    std::lock_guard lock(mu_);
    end_[side].paused = paused;
    Pump(&out);
  }
  PostAll(out);
}

void FaultLink::DropWrites(Side side, bool drop) {
  std::lock_guard lock(mu_);
  dir_[side].drop = drop;
}

void FaultLink::SetDelay(Side side, std::chrono::milliseconds delay) {
  std::lock_guard lock(mu_);
  dir_[side].delay = delay;
}

uint64_t FaultLink::bytes_written(Side side) const {
  std::lock_guard lock(mu_);
  return dir_[side].written;
}

void FaultLink::Reset() {
  std::vector<Completion> out;
  {
    std::lock_guard lock(mu_);
    reset_ = true;
    for (Side s : {kA, kB}) {
      FailAll(s, asio::error::connection_reset, &out);
      dir_[s].chunks.clear();
      dir_[s].buffered = 0;
    }
  }
  PostAll(out);
}

void FaultLink::Read(Side s, std::span<uint8_t> buffer, Transport::IoHandler handler) {
  std::vector<Completion> out;
  {
    std::lock_guard lock(mu_);
    std::error_code ec = reset_ ? std::error_code(asio::error::connection_reset)
                         : end_[s].closed ? std::error_code(asio::error::operation_aborted)
                                          : std::error_code();
    if (ec) {
      out.emplace_back(end_[s].executor, [h = std::move(handler), ec] { h(ec, 0); });
    } else {
      end_[s].reader = std::make_unique<PendingRead>(PendingRead{buffer, std::move(handler)});
      Pump(&out);
    }
  }
  PostAll(out);
}

void FaultLink::Write(Side s, std::span<const uint8_t> buffer, bool all, Transport::IoHandler handler) {
  std::vector<Completion> out;
  {
    std::lock_guard lock(mu_);
    std::error_code ec = reset_ ? std::error_code(asio::error::connection_reset)
                         : end_[s].closed ? std::error_code(asio::error::operation_aborted)
                         : end_[Other(s)].closed ? std::error_code(asio::error::broken_pipe)
                                                 : std::error_code();
    Direction& d = dir_[s];
    if (ec) {
      out.emplace_back(end_[s].executor, [h = std::move(handler), ec] { h(ec, 0); });
    } else if (d.drop || buffer.empty()) {
      d.written += buffer.size();
      out.emplace_back(end_[s].executor, [h = std::move(handler), n = buffer.size()] { h({}, n); });
    } else {
      d.writer = std::make_unique<PendingWrite>(PendingWrite{buffer, 0, all, std::move(handler)});
      Pump(&out);
    }
  }
  PostAll(out);
}

void FaultLink::Close(Side s) {
  std::vector<Completion> out;
  {
    std::lock_guard lock(mu_);
    if (end_[s].closed) return;
    end_[s].closed = true;
    FailAll(s, asio::error::operation_aborted, &out);
    Direction& toward_me = dir_[Other(s)];
    toward_me.chunks.clear();
    toward_me.buffered = 0;
    if (toward_me.writer) {  // the peer writes to a closed socket
      out.emplace_back(end_[Other(s)].executor, [h = std::move(toward_me.writer->handler)] {
        h(asio::error::broken_pipe, 0);
      });
      toward_me.writer.reset();
    }
    Pump(&out);  // the peer's pending read sees EOF once it drained what we sent
  }
  PostAll(out);
}

void FaultLink::FailAll(Side s, std::error_code ec, std::vector<Completion>* out) {
  if (end_[s].reader) {
    out->emplace_back(end_[s].executor, [h = std::move(end_[s].reader->handler), ec] { h(ec, 0); });
    end_[s].reader.reset();
  }
  if (dir_[s].writer) {
    out->emplace_back(end_[s].executor, [h = std::move(dir_[s].writer->handler), ec] { h(ec, 0); });
    dir_[s].writer.reset();
  }
}

// Writers fill the pipes up to buffer_bytes_, readers drain them; a drained pipe lets a
// writer continue, so repeat until nothing moves.
void FaultLink::Pump(std::vector<Completion>* out) {
  for (int round = 0; round < 4; ++round) {
    size_t before = out->size();
    for (Side s : {kA, kB}) PumpWriter(s, out);
    for (Side s : {kA, kB}) PumpReader(s, out);
    if (out->size() == before) return;
  }
}

void FaultLink::PumpWriter(Side from, std::vector<Completion>* out) {
  Direction& d = dir_[from];
  if (!d.writer || d.buffered >= buffer_bytes_) return;
  PendingWrite& w = *d.writer;
  size_t take = std::min(buffer_bytes_ - d.buffered, w.buffer.size() - w.done);
  const uint8_t* p = w.buffer.data() + w.done;
  d.chunks.push_back({std::vector<uint8_t>(p, p + take), 0, Clock::now() + d.delay});
  d.buffered += take;
  d.written += take;
  w.done += take;
  if (w.all && w.done < w.buffer.size()) return;
  out->emplace_back(end_[from].executor, [h = std::move(w.handler), n = w.done] { h({}, n); });
  d.writer.reset();
}

void FaultLink::PumpReader(Side to, std::vector<Completion>* out) {
  End& e = end_[to];
  Direction& d = dir_[Other(to)];
  if (!e.reader || e.paused) return;
  if (d.chunks.empty()) {
    if (!end_[Other(to)].closed) return;
    out->emplace_back(e.executor, [h = std::move(e.reader->handler)] { h(asio::error::eof, 0); });
    e.reader.reset();
    return;
  }
  Clock::time_point now = Clock::now();
  if (d.chunks.front().ready_at > now) return ScheduleWake(to, d.chunks.front().ready_at);
  std::span<uint8_t> buf = e.reader->buffer;
  size_t n = 0;
  while (n < buf.size() && !d.chunks.empty() && d.chunks.front().ready_at <= now) {
    Chunk& c = d.chunks.front();
    size_t take = std::min(buf.size() - n, c.bytes.size() - c.pos);
    std::memcpy(buf.data() + n, c.bytes.data() + c.pos, take);
    n += take;
    c.pos += take;
    if (c.pos == c.bytes.size()) d.chunks.pop_front();
  }
  d.buffered -= n;
  out->emplace_back(e.executor, [h = std::move(e.reader->handler), n] { h({}, n); });
  e.reader.reset();
}

void FaultLink::ScheduleWake(Side to, Clock::time_point at) {
  auto self = shared_from_this();
  asio::post(end_[to].executor, [self, to, at] {
    auto timer = std::make_shared<asio::steady_timer>(self->end_[to].executor, at);
    timer->async_wait([self, timer](const std::error_code&) {
      std::vector<Completion> out;
      {
        std::lock_guard lock(self->mu_);
        self->Pump(&out);
      }
      PostAll(out);
    });
  });
}

FaultTransport::FaultTransport(std::shared_ptr<FaultLink> link, FaultLink::Side side,
                               asio::any_io_executor executor)
    : link_(std::move(link)), side_(side), executor_(std::move(executor)),
      remote_(side == FaultLink::kA ? "fault-peer-b" : "fault-peer-a") {}

FaultTransport::~FaultTransport() { link_->Close(side_); }

void FaultTransport::AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) {
  link_->Read(side_, buffer, std::move(handler));
}

void FaultTransport::AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) {
  link_->Write(side_, buffer, /*all=*/true, std::move(handler));
}

void FaultTransport::AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) {
  link_->Write(side_, buffer, /*all=*/false, std::move(handler));
}

void FaultTransport::Close() { link_->Close(side_); }

FaultPair MakeFaultPair(asio::any_io_executor ea, asio::any_io_executor eb, size_t buffer_bytes) {
  auto link = std::make_shared<FaultLink>(ea, eb, buffer_bytes);
  FaultPair pair;
  pair.a = std::make_unique<FaultTransport>(link, FaultLink::kA, ea);
  pair.b = std::make_unique<FaultTransport>(link, FaultLink::kB, eb);
  pair.link = std::move(link);
  return pair;
}

}  // namespace ember::net
