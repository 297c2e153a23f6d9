// Download: the receiver's chunk pipeline (PullDownload), plus the memory and file sinks.
//
// State machine, all under mu_: chunk requests in flight live in slots_ (by offset, each
// with its failure count); replies land in ready_ until they are next in order; one
// thread at a time (the "deliverer") hands ready chunks to the sink, outside the lock.
// The first reply tells the size; after it up to `window` requests are in flight, and at
// most `window` received chunks wait for the sink, so memory stays near 2 x window x
// chunk_size. The outcome is set once (final_); the download has ended (Wait returns)
// when it is set and no sink call is running.
#include "stream/download.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "base/log.h"
#include "stream/protocol.h"
#include "stream/timer_queue.h"

namespace ember::stream {
namespace {

using protocol::GetU64;

class PullDownload final : public DownloadHandle, public std::enable_shared_from_this<PullDownload> {
 public:
  PullDownload(std::weak_ptr<cell::Cell> cell, std::string owner, RefId ref_id, ChunkSink sink,
               DownloadOptions options)
      : cell_(std::move(cell)),
        owner_(std::move(owner)),
        ref_id_(std::move(ref_id)),
        what_(fmt::format("download {} from {}", ref_id_, owner_)),
        topic_(protocol::ChunkTopic(options.topic_prefix)),
        sink_(std::move(sink)),
        options_(std::move(options)),
        meter_(what_, 0, options_.on_progress, options_.progress_interval, options_.log_interval) {}

  void Start();

  void Abort() override;
  Status Wait() override;
  std::optional<Status> WaitFor(std::chrono::milliseconds timeout) override;
  TransferProgress progress() const override { return meter_.Snapshot(); }
  DownloadStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  struct Slot {
    uint64_t len = 0;       // bytes asked for
    int failures = 0;       // consecutive failed attempts
    uint64_t attempt = 0;   // id of the attempt in flight; older replies are stale
    TimerQueue::TaskId retry_task = 0;
  };
  struct ChunkRequest {
    uint64_t offset, len, attempt;
  };

  std::vector<ChunkRequest> PlanLocked();
  ChunkRequest AddSlotLocked(uint64_t offset, uint64_t len);
  void Send(const std::vector<ChunkRequest>& requests);
  void OnReply(uint64_t offset, uint64_t attempt, Result<cell::Message> reply);
  void ScheduleRetryLocked(uint64_t offset, Slot& slot, const Status& why);
  void Retry(uint64_t offset);
  Status AcceptLocked(uint64_t offset, const Slot& slot, const cell::Message& reply);
  bool TakeDelivererLocked();
  void Deliver();
  Status CallSink(uint64_t offset, const BodySource& body);
  bool SetFinalLocked(Status status);
  void Complete();
  void ReportDone(const Status& status, uint64_t bytes);

  const std::weak_ptr<cell::Cell> cell_;
  const std::string owner_;
  const RefId ref_id_;
  const std::string what_;
  const std::string topic_;
  const ChunkSink sink_;
  const DownloadOptions options_;
  ProgressMeter meter_;  // updated by the deliverer only

  mutable std::mutex mu_;
  std::condition_variable ended_cv_;
  // Guarded by mu_.
  std::optional<uint64_t> size_;  // from the first reply
  uint64_t next_offset_ = 0;      // first byte not yet asked for
  uint64_t delivered_ = 0;        // bytes handed to the sink, from start_offset on
  uint64_t next_attempt_ = 1;
  std::map<uint64_t, Slot> slots_;
  std::map<uint64_t, std::shared_ptr<BodySource>> ready_;
  bool delivering_ = false;  // a thread is in Deliver()
  std::optional<Status> final_;
  bool ended_ = false;
  std::vector<TimerQueue::TaskId> to_cancel_;
  DownloadStats stats_;
};

void PullDownload::Start() {
  std::vector<ChunkRequest> first;
  bool complete = false;
  {
    std::lock_guard lock(mu_);
    delivered_ = next_offset_ = options_.start_offset;
    if (cell_.expired() || !sink_ || options_.chunk_size == 0 || options_.window < 1 ||
        options_.retry.max_retries < 0) {
      complete = SetFinalLocked(
          Status::InvalidArgument(what_ + ": needs a cell, a sink, chunk_size > 0, window >= 1, max_retries >= 0"));
    } else {
      // The size is unknown until the first reply, so the pipeline fills after it.
      first.push_back(AddSlotLocked(next_offset_, options_.chunk_size));
      next_offset_ += options_.chunk_size;
    }
  }
  if (complete) return Complete();
  Send(first);
}

// ---- requests -----------------------------------------------------------------------

PullDownload::ChunkRequest PullDownload::AddSlotLocked(uint64_t offset, uint64_t len) {
  Slot& slot = slots_[offset];
  slot.len = len;
  slot.attempt = next_attempt_++;
  ++stats_.requests;
  return {offset, len, slot.attempt};
}

// More requests while fewer than `window` are in flight and fewer than `window` received
// chunks wait for the sink (backpressure from a slow sink).
std::vector<PullDownload::ChunkRequest> PullDownload::PlanLocked() {
  std::vector<ChunkRequest> out;
  if (final_ || !size_) return out;
  size_t window = static_cast<size_t>(options_.window);
  while (next_offset_ < *size_ && slots_.size() < window && ready_.size() < window) {
    uint64_t len = std::min<uint64_t>(options_.chunk_size, *size_ - next_offset_);
    out.push_back(AddSlotLocked(next_offset_, len));
    next_offset_ += len;
  }
  return out;
}

void PullDownload::Send(const std::vector<ChunkRequest>& requests) {
  auto cell = cell_.lock();
  for (const ChunkRequest& r : requests) {
    auto self = shared_from_this();
    auto done = [self, offset = r.offset, attempt = r.attempt](Result<cell::Message> reply) {
      self->OnReply(offset, attempt, std::move(reply));
    };
    if (!cell) {  // not retryable: the cell will not come back
      done(Status::Aborted(what_ + ": the receiving cell is gone"));
      continue;
    }
    cell::Json h = {{protocol::kRef, ref_id_}, {protocol::kOffset, r.offset}, {protocol::kMaxLen, r.len}};
    cell->RequestAsync(owner_, cell::Message::Make(topic_, std::move(h)), options_.request_timeout, std::move(done));
  }
}

void PullDownload::OnReply(uint64_t offset, uint64_t attempt, Result<cell::Message> reply) {
  std::vector<ChunkRequest> next;
  bool complete = false, deliver = false;
  {
    std::lock_guard lock(mu_);
    auto it = slots_.find(offset);
    if (final_ || it == slots_.end() || it->second.attempt != attempt) return;  // ended, or a stale reply
    Slot& slot = it->second;
    Status s = reply.ok() ? AcceptLocked(offset, slot, *reply) : reply.status();
    if (s.ok()) {
      next = PlanLocked();
      deliver = TakeDelivererLocked();
    } else if (!reply.ok() && s.IsRetryable() && slot.failures < options_.retry.max_retries) {
      ScheduleRetryLocked(offset, slot, s);
    } else {
      std::string retries = slot.failures > 0 ? fmt::format(" after {} retries", slot.failures) : "";
      complete = SetFinalLocked(s.WithContext(fmt::format("{}: chunk at offset {}{}", what_, offset, retries)));
    }
  }
  if (complete) Complete();
  Send(next);
  if (deliver) Deliver();
}

// Same offset, same length: the owner produces the same bytes again (idempotent).
void PullDownload::ScheduleRetryLocked(uint64_t offset, Slot& slot, const Status& why) {
  ++slot.failures;
  ++stats_.retries;
  std::chrono::milliseconds delay = options_.retry.Backoff(slot.failures);
  EMBER_LOG_WARN("{}: chunk at offset {} failed ({}); retry {}/{} in {} ms", what_, offset, why.ToString(),
                 slot.failures, options_.retry.max_retries, delay.count());
  slot.retry_task = TimerQueue::Shared().After(delay, [self = shared_from_this(), offset] { self->Retry(offset); });
}

void PullDownload::Retry(uint64_t offset) {
  std::vector<ChunkRequest> again;
  {
    std::lock_guard lock(mu_);
    auto it = slots_.find(offset);
    if (final_ || it == slots_.end()) return;
    Slot& slot = it->second;
    slot.retry_task = 0;
    slot.attempt = next_attempt_++;
    ++stats_.requests;
    again.push_back({offset, slot.len, slot.attempt});
  }
  Send(again);
}

Status PullDownload::AcceptLocked(uint64_t offset, const Slot& slot, const cell::Message& reply) {
  std::optional<uint64_t> size = GetU64(reply.h(), protocol::kSize), at = GetU64(reply.h(), protocol::kOffset);
  if (!size || at != offset) {
    return Status::DataLoss(fmt::format("{}: malformed chunk reply for offset {}: {}", what_, offset, reply.h().dump()));
  }
  if (size_ && *size_ != *size) {
    return Status::FailedPrecondition(
        fmt::format("{}: the object changed size from {} to {} bytes during the download", what_, *size_, *size));
  }
  if (!size_) {
    size_ = *size;
    next_offset_ = std::min(next_offset_, *size);
    meter_.SetTotal(*size - std::min(options_.start_offset, *size));  // progress counts this transfer
  }
  uint64_t expected = std::min(slot.len, *size_ - std::min(offset, *size_));
  if (reply.body_size() != expected) {
    return Status::DataLoss(fmt::format("{}: chunk at offset {} has {} bytes, expected {}", what_, offset,
                                        reply.body_size(), expected));
  }
  if (expected > 0) ready_[offset] = reply.body;
  slots_.erase(offset);
  return Status::Ok();
}

// ---- delivery -----------------------------------------------------------------------

// True if the caller must run Deliver(): the next chunk is ready (or all bytes are in)
// and no other thread is delivering.
bool PullDownload::TakeDelivererLocked() {
  if (delivering_ || final_) return false;
  bool all_in = size_ && delivered_ == *size_;
  if (!all_in && !ready_.count(delivered_)) return false;
  delivering_ = true;
  return true;
}

void PullDownload::Deliver() {
  std::unique_lock lock(mu_);
  for (;;) {
    auto it = ready_.find(delivered_);
    if (final_ || it == ready_.end()) {
      delivering_ = false;
      bool complete = final_.has_value() || (size_ && delivered_ == *size_ && SetFinalLocked(Status::Ok()));
      lock.unlock();
      if (complete) Complete();
      return;
    }
    std::shared_ptr<BodySource> chunk = std::move(it->second);
    ready_.erase(it);
    uint64_t offset = delivered_;
    std::vector<ChunkRequest> next;
    lock.unlock();
    Status s = CallSink(offset, *chunk);
    if (s.ok()) meter_.Update(offset + chunk->size() - options_.start_offset);
    lock.lock();
    if (!s.ok()) {
      SetFinalLocked(s.WithContext(fmt::format("{}: the sink refused the chunk at offset {}", what_, offset)));
      continue;
    }
    delivered_ += chunk->size();
    stats_.bytes += chunk->size();
    next = PlanLocked();  // a slot in ready_ was freed
    if (!next.empty()) {
      lock.unlock();
      Send(next);
      lock.lock();
    }
  }
}

Status PullDownload::CallSink(uint64_t offset, const BodySource& body) {
  DownloadChunk c{.offset = offset, .total_size = size_.value_or(0), .bytes = {}};  // size_ is set before any chunk
  if (const uint8_t* p = body.contiguous()) {
    c.bytes = {p, static_cast<size_t>(body.size())};
    return sink_(c);
  }
  std::vector<uint8_t> copy(body.size());
  EMBER_ASSIGN_OR_RETURN(size_t n, body.ReadAt(0, copy));
  c.bytes = {copy.data(), n};
  return sink_(c);
}

// ---- ending -------------------------------------------------------------------------

// Sets the outcome (the first one wins) and stops retries. Returns true if the caller
// must run Complete() once it has released mu_; false if a deliverer will, or if the
// outcome was already set.
bool PullDownload::SetFinalLocked(Status status) {
  if (final_) return false;
  final_ = std::move(status);
  for (const auto& [offset, slot] : slots_) {
    if (slot.retry_task) to_cancel_.push_back(slot.retry_task);
  }
  slots_.clear();
  ready_.clear();
  return !delivering_;
}

void PullDownload::Complete() {
  Status status;
  std::vector<TimerQueue::TaskId> cancel;
  DownloadStats stats;
  {
    std::lock_guard lock(mu_);
    status = *final_;
    cancel.swap(to_cancel_);
    stats = stats_;
  }
  for (TimerQueue::TaskId id : cancel) TimerQueue::Shared().Cancel(id);
  meter_.Finish(status);
  if (stats.requests > 0) ReportDone(status, stats.bytes);  // the owner never heard of us otherwise
  {
    std::lock_guard lock(mu_);
    ended_ = true;
  }
  ended_cv_.notify_all();
}

// Tells the owner this receiver is done (ok or not), so its transaction can end early.
void PullDownload::ReportDone(const Status& status, uint64_t bytes) {
  auto cell = cell_.lock();
  if (!cell) return;
  cell::Json h = {{protocol::kRef, ref_id_}, {protocol::kOk, status.ok()}, {protocol::kBytes, bytes}};
  if (!status.ok()) h[protocol::kError] = status.ToString();
  if (Status s = cell->Fire(owner_, cell::Message::Make(protocol::DoneTopic(options_.topic_prefix), std::move(h)));
      !s.ok()) {
    EMBER_LOG_DEBUG("{}: done report not sent: {}", what_, s.ToString());
  }
}

void PullDownload::Abort() {
  bool complete;
  {
    std::lock_guard lock(mu_);
    complete = SetFinalLocked(Status::Aborted(what_ + ": aborted by the receiver"));
  }
  if (complete) Complete();
}

Status PullDownload::Wait() {
  std::unique_lock lock(mu_);
  ended_cv_.wait(lock, [this] { return ended_; });
  return *final_;
}

std::optional<Status> PullDownload::WaitFor(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!ended_cv_.wait_for(lock, timeout, [this] { return ended_; })) return std::nullopt;
  return *final_;
}

// ---- sinks --------------------------------------------------------------------------

Status WriteFully(int fd, const DownloadChunk& c, const std::string& path) {
  size_t done = 0;
  while (done < c.bytes.size()) {
    ssize_t n = ::pwrite(fd, c.bytes.data() + done, c.bytes.size() - done, static_cast<off_t>(c.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Unavailable(fmt::format("write {}: {}", path, std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::shared_ptr<DownloadHandle> Download(const std::shared_ptr<cell::Cell>& cell, std::string owner, RefId ref_id,
                                         ChunkSink sink, DownloadOptions options) {
  auto d = std::make_shared<PullDownload>(cell, std::move(owner), std::move(ref_id), std::move(sink),
                                          std::move(options));
  d->Start();
  return d;
}

Result<std::shared_ptr<BodySource>> DownloadToMemory(const std::shared_ptr<cell::Cell>& cell, std::string owner,
                                                     RefId ref_id, DownloadOptions options) {
  if (options.start_offset != 0) return Status::InvalidArgument("DownloadToMemory cannot start mid-object");
  std::unique_ptr<uint8_t[]> buffer;
  uint64_t size = 0;
  auto sink = [&buffer, &size](const DownloadChunk& c) -> Status {
    if (!buffer) {
      buffer.reset(new (std::nothrow) uint8_t[c.total_size]);
      if (!buffer) return Status::ResourceExhausted(fmt::format("cannot allocate {} bytes", c.total_size));
      size = c.total_size;
    }
    std::memcpy(buffer.get() + c.offset, c.bytes.data(), c.bytes.size());
    return Status::Ok();
  };
  EMBER_RETURN_IF_ERROR(Download(cell, std::move(owner), std::move(ref_id), sink, std::move(options))->Wait());
  if (!buffer) return cell::BytesBody("");
  return wire::BufferBody(std::move(buffer), size);
}

Status DownloadToFile(const std::shared_ptr<cell::Cell>& cell, std::string owner, RefId ref_id,
                      const std::string& path, DownloadOptions options) {
  std::string part = path + ".part";
  bool resuming = options.start_offset > 0;
  int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (resuming ? 0 : O_TRUNC), 0644);
  if (fd < 0) return Status::Unavailable(fmt::format("open {}: {}", part, std::strerror(errno)));
  auto sink = [fd, &part](const DownloadChunk& c) { return WriteFully(fd, c, part); };
  Status s = Download(cell, std::move(owner), std::move(ref_id), sink, std::move(options))->Wait();
  if (::close(fd) != 0 && s.ok()) s = Status::Unavailable(fmt::format("close {}: {}", part, std::strerror(errno)));
  if (s.ok() && ::rename(part.c_str(), path.c_str()) != 0) {
    s = Status::Unavailable(fmt::format("rename {} to {}: {}", part, path, std::strerror(errno)));
  }
  if (!s.ok() && !resuming) ::unlink(part.c_str());  // a resumed partial file is kept for the next try
  return s;
}

void ApplyConfig(const base::Config& config, DownloadOptions* options) {
  options->request_timeout = config.Get(base::kStreamingPerRequestTimeout);
  options->retry = RetryPolicy::FromConfig(config);
}

}  // namespace ember::stream
