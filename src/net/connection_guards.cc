// Connection guards and liveness (docs/config.md; FLARE 2.7.2's names and semantics):
//
//   streaming_send_timeout          a write with no progress for this long closes the
//                                   connection: a half-written frame cannot be taken back,
//                                   so the framing would be lost anyway.
//   streaming_ack_progress_timeout  a stream starved of credit this long is aborted (ABORT
//                                   to the peer, SendDone gets kDeadlineExceeded).
//   sfm_send_stall_timeout          a write lasting longer is reported at each check; with
//                                   sfm_close_stalled_connection the connection closes
//                                   after sfm_send_stall_consecutive_checks of them.
//   heartbeat_interval              PING after this long without receiving anything; a
//                                   peer that promised to answer PING is dropped after
//                                   heartbeat_misses such intervals.
//
// Every timer runs on the connection's io thread and stops in CloseNow.
#include <asio/post.hpp>
#include <fmt/format.h>

#include "base/log.h"
#include "net/connection.h"

namespace ember::net {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

void Connection::StartGuards() {
  ArmPeriodic(check_timer_, options_.check_interval, &Connection::OnCheckTick);
  if (options_.ack_progress_timeout.count() > 0) {
    ArmPeriodic(credit_timer_, options_.ack_progress_check_interval, &Connection::OnCreditTick);
  }
}

void Connection::ArmPeriodic(asio::steady_timer& timer, std::chrono::milliseconds period,
                             void (Connection::*tick)()) {
  timer.expires_after(std::max(period, std::chrono::milliseconds(1)));
  timer.async_wait([self = shared_from_this(), &timer, period, tick](const std::error_code& ec) {
    if (ec || self->state_ != State::kOpen) return;
    (self.get()->*tick)();
    if (self->state_ == State::kOpen) self->ArmPeriodic(timer, period, tick);
  });
}

// ---- streaming_send_timeout ------------------------------------------------------------

// Armed while a write is in flight; it fires at the last progress + timeout and re-arms
// itself if progress happened since, so steady writes cost no timer operations.
void Connection::ArmSendTimer() {
  if (send_timer_armed_ || options_.send_timeout.count() <= 0) return;
  send_timer_armed_ = true;
  send_timer_.expires_at(write_progress_ + options_.send_timeout);
  send_timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    self->send_timer_armed_ = false;
    if (!ec) self->OnSendTimer();
  });
}

void Connection::OnSendTimer() {
  if (!writing_ || state_ == State::kClosed) return;
  Clock::duration idle = Clock::now() - write_progress_;
  if (idle < options_.send_timeout) return ArmSendTimer();
  Status why = Status::DeadlineExceeded(fmt::format(
      "write to {} made no progress for {:.1f} s (streaming_send_timeout {:.1f} s, {} of {} bytes "
      "written); closing the connection rather than desynchronize its framing",
      Describe(), Seconds(idle), Seconds(options_.send_timeout), write_pos_, write_buf_.size()));
  EMBER_LOG_WARN("{}", why.message());
  CloseNow(why);
}

// ---- sfm_send_stall_* and heartbeats -----------------------------------------------------

void Connection::OnCheckTick() {
  Clock::time_point now = Clock::now();
  CheckStall(now);
  if (state_ == State::kOpen) CheckHeartbeat(now);
}

void Connection::CheckStall(Clock::time_point now) {
  if (options_.stall_timeout.count() <= 0 || !writing_ || now - write_started_ <= options_.stall_timeout) {
    stall_checks_ = 0;
    return;
  }
  ++stall_checks_;
  stats_.stall_warnings.fetch_add(1, std::memory_order_relaxed);
  EMBER_LOG_WARN("detected stalled send to {}: one write has lasted {:.1f} s, {} of {} bytes written ({}/{})",
                 Describe(), Seconds(now - write_started_), write_pos_, write_buf_.size(), stall_checks_,
                 options_.stall_consecutive_checks);
  if (!options_.close_stalled || stall_checks_ < options_.stall_consecutive_checks) return;
  CloseNow(Status::Unavailable(fmt::format(
      "closed the stalled connection to {}: a write lasted {:.1f} s over {} consecutive checks "
      "(sfm_close_stalled_connection)",
      Describe(), Seconds(now - write_started_), stall_checks_)));
}

void Connection::CheckHeartbeat(Clock::time_point now) {
  auto interval = options_.heartbeat_interval;
  if (interval.count() <= 0) return;
  Clock::duration silent = now - last_received_;
  if (peer_answers_ping_ && silent >= interval * options_.heartbeat_misses) {
    Status why = Status::Unavailable(fmt::format(
        "{} sent nothing for {:.1f} s ({} heartbeat intervals of {:.1f} s, no PONG); peer considered dead",
        Describe(), Seconds(silent), options_.heartbeat_misses, Seconds(interval)));
    EMBER_LOG_WARN("{}", why.message());
    return CloseNow(why);
  }
  if (silent < interval || now - last_ping_ < interval) return;
  last_ping_ = now;
  stats_.pings_sent.fetch_add(1, std::memory_order_relaxed);
  scheduler_.AddControl(wire::FrameType::kPing, "");
  MaybeWrite();
}

// ---- streaming_ack_progress_timeout ------------------------------------------------------

void Connection::OnCreditTick() {
  auto stalled = scheduler_.TakeStalled(Clock::now(), options_.ack_progress_timeout);
  for (SendScheduler::Stalled& s : stalled) {
    Status why = Status::DeadlineExceeded(fmt::format(
        "stream {} to {}: no flow-control credit for {:.1f} s ({} of {} body bytes sent; "
        "streaming_ack_progress_timeout {:.1f} s)",
        s.stream_id, Describe(), Seconds(s.waited), s.offset, s.size, Seconds(options_.ack_progress_timeout)));
    EMBER_LOG_WARN("{}", why.message());
    stats_.streams_aborted_for_credit.fetch_add(1, std::memory_order_relaxed);
    scheduler_.AddAbort(s.stream_id, wire::EncodeAbort({.code = "timeout", .message = why.message()}));
    Release(1, 0);
    if (s.done) s.done(why);
  }
  if (!stalled.empty()) MaybeWrite();
}

}  // namespace ember::net
