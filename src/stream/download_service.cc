// DownloadService: transactions, chunk serving, done reports, inactivity sweep.
#include "stream/download_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <set>

#include "base/log.h"
#include "stream/body_views.h"
#include "stream/protocol.h"

namespace ember::stream {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using protocol::GetString;
using protocol::GetU64;

int64_t NowNs() { return Clock::now().time_since_epoch() / std::chrono::nanoseconds(1); }

}  // namespace

std::string_view TransactionStatusName(TransactionStatus s) {
  switch (s) {
    case TransactionStatus::kFinished: return "finished";
    case TransactionStatus::kTimedOut: return "timed out";
    case TransactionStatus::kCancelled: return "cancelled";
  }
  return "unknown";
}

struct DownloadService::Transaction {
  RefId ref_id;
  RegisterOptions options;
  uint64_t size = 0;
  Clock::time_point started = Clock::now();
  std::shared_ptr<const BodySource> object;  // guarded by the service's mu_; null once ended
  std::set<std::string> ok, failed;          // guarded by the service's mu_
  std::atomic<int64_t> last_active_ns{NowNs()};
  std::atomic<uint64_t> bytes_served{0};
  std::atomic<uint64_t> chunks_served{0};

  void Touch() { last_active_ns.store(NowNs(), std::memory_order_relaxed); }
  bool Idle(int64_t now_ns) const {
    return now_ns - last_active_ns.load(std::memory_order_relaxed) >
           std::chrono::nanoseconds(options.inactivity_timeout).count();
  }
};

// What a chunk request found: the transaction, its object and the test hook, copied in
// the one short critical section of a request so the read happens without the lock.
struct DownloadService::Lookup {
  std::shared_ptr<Transaction> tx;
  std::shared_ptr<const BodySource> object;
  ChunkHook hook;
};

DownloadService::DownloadService(std::string owner, DownloadServiceOptions options)
    : owner_(std::move(owner)), options_(std::move(options)) {}

DownloadService::~DownloadService() { Shutdown(); }

std::shared_ptr<DownloadService> DownloadService::Install(const std::shared_ptr<cell::Cell>& cell,
                                                          DownloadServiceOptions options) {
  auto service = std::make_shared<DownloadService>(cell->name(), options);
  std::weak_ptr<DownloadService> weak = service;
  std::string owner = cell->name();
  cell->Handle(protocol::ChunkTopic(options.topic_prefix), [weak, owner](cell::Message m, cell::Responder r) {
    if (auto self = weak.lock()) return self->OnChunkRequest(std::move(m), std::move(r));
    r.Error(StatusCode::kAborted, fmt::format("the download service of {} has stopped", owner));
  });
  cell->Handle(protocol::DoneTopic(options.topic_prefix), [weak](cell::Message m, cell::Responder) {
    if (auto self = weak.lock()) self->OnDoneReport(m);
  });
  service->ScheduleSweep();
  return service;
}

// ---- owner API ----------------------------------------------------------------------

Result<RefId> DownloadService::Register(std::shared_ptr<const BodySource> object, RegisterOptions options) {
  if (!object) return Status::InvalidArgument("Register: no object");
  if (options.num_receivers < 0) return Status::InvalidArgument("Register: num_receivers < 0");
  if (options.inactivity_timeout <= milliseconds(0)) {
    return Status::InvalidArgument("Register: inactivity_timeout must be positive");
  }
  auto tx = std::make_shared<Transaction>();
  tx->ref_id = options.ref_id.empty() ? NewRefId() : options.ref_id;
  tx->size = object->size();
  tx->object = std::move(object);
  tx->options = std::move(options);
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return Status::FailedPrecondition(owner_ + ": the download service is shut down");
    if (active_.count(tx->ref_id)) {
      return Status::AlreadyExists(fmt::format("{}: download {} is already registered", owner_, tx->ref_id));
    }
    active_[tx->ref_id] = tx;
  }
  EMBER_LOG_DEBUG("{}: download {} registered: {} bytes for {} receivers", owner_, tx->ref_id, tx->size,
                  tx->options.num_receivers);
  return tx->ref_id;
}

Status DownloadService::Cancel(const RefId& ref_id, std::string reason) {
  {
    std::lock_guard lock(mu_);
    if (!active_.count(ref_id)) return Status::NotFound(fmt::format("{}: no active download {}", owner_, ref_id));
  }
  End(ref_id, TransactionStatus::kCancelled, std::move(reason));
  return Status::Ok();
}

std::optional<TransactionResult> DownloadService::WaitDone(const RefId& ref_id, milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!ended_cv_.wait_for(lock, timeout, [&] { return active_.count(ref_id) == 0; })) return std::nullopt;
  auto it = ended_.find(ref_id);
  if (it == ended_.end()) return std::nullopt;
  return it->second;
}

void DownloadService::Shutdown() {
  std::vector<RefId> refs;
  TimerQueue::TaskId sweep = 0;
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    sweep = std::exchange(sweep_task_, 0);
    for (const auto& [ref, tx] : active_) refs.push_back(ref);
  }
  if (sweep) TimerQueue::Shared().Cancel(sweep);
  for (const RefId& ref : refs) End(ref, TransactionStatus::kCancelled, "the download service shut down");
}

size_t DownloadService::active_transactions() const {
  std::lock_guard lock(mu_);
  return active_.size();
}

void DownloadService::SetChunkHook(ChunkHook hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

// ---- requests (cell workers) --------------------------------------------------------

void DownloadService::OnChunkRequest(cell::Message request, cell::Responder responder) {
  const cell::Json& h = request.h();
  ChunkRequestInfo info{.ref_id = GetString(h, protocol::kRef), .receiver = request.src()};
  std::optional<uint64_t> offset = GetU64(h, protocol::kOffset), max_len = GetU64(h, protocol::kMaxLen);
  if (info.ref_id.empty() || !offset || !max_len || *max_len == 0) {
    return responder.Error(StatusCode::kInvalidArgument,
                           fmt::format("{}: a chunk request needs ref, offset and max_len > 0; got {}", owner_,
                                       h.dump()));
  }
  info.offset = *offset;
  info.max_len = *max_len;
  Result<Lookup> found = Find(info.ref_id);
  if (!found.ok()) return responder.Error(found.status().code(), found.status().message());
  ChunkFault fault = found->hook ? found->hook(info) : ChunkFault{};
  if (fault.kind == ChunkFault::kError) return responder.Error(fault.error.code(), fault.error.message());
  if (fault.kind == ChunkFault::kDelay) {
    std::weak_ptr<DownloadService> weak = weak_from_this();
    TimerQueue::Shared().After(fault.delay, [weak, found = std::move(*found), info, responder]() mutable {
      if (auto self = weak.lock()) self->Serve(found, info, std::move(responder));
    });
    return;
  }
  Serve(*found, info, std::move(responder));
}

Result<DownloadService::Lookup> DownloadService::Find(const RefId& ref_id) {
  std::lock_guard lock(mu_);
  if (auto it = active_.find(ref_id); it != active_.end()) {
    it->second->Touch();
    return Lookup{it->second, it->second->object, hook_};
  }
  auto ended = ended_.find(ref_id);
  if (ended == ended_.end()) return Status::NotFound(fmt::format("{} has no download {}", owner_, ref_id));
  if (ended->second.status == TransactionStatus::kCancelled) {
    return Status::Aborted(fmt::format("download {} from {} was cancelled: {}", ref_id, owner_, ended->second.reason));
  }
  return Status::NotFound(fmt::format("download {} from {} has ended ({})", ref_id, owner_,
                                      TransactionStatusName(ended->second.status)));
}

// Reads the chunk with no lock held: concurrent receivers never wait for each other here.
void DownloadService::Serve(const Lookup& found, const ChunkRequestInfo& info, cell::Responder responder) {
  uint64_t size = found.object->size();
  if (info.offset > size) {
    return responder.Error(StatusCode::kOutOfRange, fmt::format("download {} from {}: offset {} is past the end {}",
                                                                info.ref_id, owner_, info.offset, size));
  }
  uint64_t len = std::min({info.max_len, options_.max_chunk_size, size - info.offset});
  Result<std::shared_ptr<BodySource>> chunk = SliceOf(found.object, info.offset, len);
  if (!chunk.ok()) {
    Status s = chunk.status().WithContext(fmt::format("download {} from {}: reading [{}, {})", info.ref_id, owner_,
                                                      info.offset, info.offset + len));
    EMBER_LOG_WARN("{}", s.ToString());
    return responder.Error(s.code(), s.message());
  }
  found.tx->bytes_served.fetch_add(len, std::memory_order_relaxed);
  found.tx->chunks_served.fetch_add(1, std::memory_order_relaxed);
  responder.Reply({{protocol::kSize, size}, {protocol::kOffset, info.offset}}, std::move(*chunk));
}

void DownloadService::OnDoneReport(const cell::Message& report) {
  const cell::Json& h = report.h();
  RefId ref_id = GetString(h, protocol::kRef);
  bool ok = protocol::GetBool(h, protocol::kOk, false);
  std::string receiver = report.src();
  bool all_done = false;
  {
    std::lock_guard lock(mu_);
    auto it = active_.find(ref_id);
    if (it == active_.end()) return;  // ended already (timeout, cancel) or unknown
    Transaction& tx = *it->second;
    tx.Touch();
    if (!tx.ok.count(receiver) && !tx.failed.count(receiver)) (ok ? tx.ok : tx.failed).insert(receiver);
    int reported = static_cast<int>(tx.ok.size() + tx.failed.size());
    all_done = tx.options.num_receivers > 0 && reported >= tx.options.num_receivers;
  }
  if (!ok) {
    EMBER_LOG_WARN("{}: receiver {} gave up download {}: {}", owner_, receiver, ref_id, GetString(h, protocol::kError));
  }
  if (all_done) End(ref_id, TransactionStatus::kFinished, "");
}

// ---- ending -------------------------------------------------------------------------

void DownloadService::End(const RefId& ref_id, TransactionStatus status, std::string reason) {
  std::shared_ptr<const BodySource> object;
  std::function<void(const TransactionResult&)> on_done;
  TransactionResult result;
  {
    std::lock_guard lock(mu_);
    auto it = active_.find(ref_id);
    if (it == active_.end()) return;
    std::shared_ptr<Transaction> tx = std::move(it->second);
    active_.erase(it);
    object = std::move(tx->object);
    on_done = std::move(tx->options.on_done);
    result = TransactionResult{
        .ref_id = ref_id,
        .status = status,
        .reason = std::move(reason),
        .receivers_ok = {tx->ok.begin(), tx->ok.end()},
        .receivers_failed = {tx->failed.begin(), tx->failed.end()},
        .bytes_served = tx->bytes_served.load(),
        .chunks_served = tx->chunks_served.load(),
        .elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - tx->started),
    };
    RememberEnded(result);
  }
  ended_cv_.notify_all();
  object.reset();  // outside the lock: a destructor may unmap or free a model
  EMBER_LOG_INFO("{}: download {} {}{}: {} receivers ok, {} failed, {:.1f} MB served in {:.1f} s", owner_, ref_id,
                 TransactionStatusName(status), result.reason.empty() ? "" : " (" + result.reason + ")",
                 result.receivers_ok.size(), result.receivers_failed.size(), result.bytes_served / 1e6,
                 result.elapsed.count() / 1000.0);
  if (on_done) on_done(result);
}

void DownloadService::RememberEnded(TransactionResult result) {
  RefId ref = result.ref_id;
  if (!ended_.count(ref)) ended_order_.push_back(ref);
  ended_[ref] = std::move(result);
  while (ended_order_.size() > options_.max_ended_refs) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
}

void DownloadService::Sweep() {
  std::vector<RefId> idle;
  int64_t now = NowNs();
  {
    std::lock_guard lock(mu_);
    for (const auto& [ref, tx] : active_) {
      if (tx->Idle(now)) idle.push_back(ref);
    }
  }
  for (const RefId& ref : idle) End(ref, TransactionStatus::kTimedOut, "no request within the inactivity timeout");
}

void DownloadService::ScheduleSweep() {
  std::weak_ptr<DownloadService> weak = weak_from_this();
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  sweep_task_ = TimerQueue::Shared().After(options_.monitor_interval, [weak] {
    if (auto self = weak.lock()) {
      self->Sweep();
      self->ScheduleSweep();
    }
  });
}

}  // namespace ember::stream
